#define IQUEST_ISA_NS avx512
#include "kernels/cpu/fast/vector_math_impl.inc"
