// The fast CPU backend's GEMM over GGUF-quantized weights (kernels/quant/ggml_quant.h), read in
// place from the file's mapping: no packed copy, so serving a Q4_K_M file costs its own bytes.
//
// out[m, n] = sum_k a[m, k] * Dequantize(w)[n, k], with w [N, K] rows of whole blocks. The
// blocks are dequantized in registers and L1-sized scratch by the format's own code
// (kernels/quant/dequantize_block.inc, bit-exact to the reference), then multiplied in f32: the
// result differs from CpuBackend's (dequantize, then the f32 Gemm) only by summation order.
//
// Two shapes, chosen by M:
//  - M <= kQuantRowDotMaxRows (decode): each weight block is dequantized into an L1 buffer and
//    multiplied into every row's accumulators; each weight byte is read once per call, which
//    is what bounds decode.
//  - larger M (prefill, big batches): a panel of 16 weight rows is dequantized into the packed
//    f32 panel layout (packed_gemm.h) and the f32 micro-kernels run over it for every row of
//    `a`; the dequantization is amortized over M.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant/ggml_quant.h"

namespace iquest::cpu {

inline constexpr int64_t kQuantRowDotMaxRows = 4;
inline constexpr int64_t kQuantRowTile = 8;  // Weight rows per task of the row path.

struct QuantGemmArgs {
  QuantType type = QuantType::kQ8_0;
  const uint8_t* w = nullptr;  // [n] rows of row_bytes
  size_t row_bytes = 0;
  int64_t n = 0;
  int64_t k = 0;
  const float* a = nullptr;  // f32 [m, k]
  int64_t m = 0;
  float* out = nullptr;  // f32 [m, n]
};

#define IQUEST_DECLARE_QUANT_GEMM(ns)                                                          \
  namespace ns {                                                                               \
  /* Weight rows [n_begin, n_end) of out, for m <= kQuantRowDotMaxRows. */                     \
  void QuantGemmRows(const QuantGemmArgs& args, int64_t n_begin, int64_t n_end);               \
  /* Panel p (weight rows [16p, 16p + 16), zero rows past n) dequantized into the f32 panel */ \
  /* layout of packed_gemm.h: `panel` holds k * kPanelWidth floats. */                         \
  void DequantizePanel(const QuantGemmArgs& args, int64_t p, float* panel);                    \
  }

IQUEST_DECLARE_QUANT_GEMM(avx2)
IQUEST_DECLARE_QUANT_GEMM(avx512)

#undef IQUEST_DECLARE_QUANT_GEMM

}  // namespace iquest::cpu
