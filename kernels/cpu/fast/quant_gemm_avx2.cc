#define IQUEST_ISA_NS avx2
#include "kernels/cpu/fast/quant_gemm_impl.inc"
