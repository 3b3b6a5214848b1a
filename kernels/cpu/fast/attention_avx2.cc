#define IQUEST_ISA_NS avx2
#include "kernels/cpu/fast/attention_impl.inc"
