#define IQUEST_ISA_NS avx512
#include "kernels/cpu/fast/attention_impl.inc"
