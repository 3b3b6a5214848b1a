#define IQUEST_ISA_NS avx2
#include "kernels/cpu/fast/vector_math_impl.inc"
