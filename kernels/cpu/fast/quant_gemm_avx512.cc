#define IQUEST_ISA_NS avx512
#include "kernels/cpu/fast/quant_gemm_impl.inc"
