// The fast CPU GEMM: weights repacked once into panels, and per-ISA micro-kernels over them.
//
// out[m, n] = sum_k a[m, k] * w[n, k] with a: f32 [M, K], w: [N, K] (HF Linear layout).
//
// Packed layout. Panel p holds weight rows [16p, 16p + 16) (zero rows past N), stored as
// [K / k_group][16][k_group]: for each k step, the 16 output columns side by side, so a
// micro-kernel reads one contiguous stream per panel and produces 16 outputs per vector.
// k_group is 2 for bf16 (a k pair per 32-bit lane: the operand order of VDPBF16PS, and a lane
// splits into two exact f32 values with one shift and one mask), 1 for f16 and f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/tensor.h"
#include "kernels/cpu/fast/cpu_isa.h"

namespace iquest::cpu {

class ThreadPool;

inline constexpr int64_t kPanelWidth = 16;

struct PackedWeight {
  DType dtype = DType::kF32;
  int64_t n = 0;  // Output columns (weight rows).
  int64_t k = 0;  // Reduction length; even for bf16.
  int64_t num_panels = 0;
  int k_group = 1;
  size_t panel_bytes = 0;
  // The panels held start at this one: 0 for a packed weight; the first of a window of panels
  // dequantized on the fly (quant_gemm.h), whose `data` the caller owns (a no-op deleter).
  int64_t first_panel = 0;
  std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, nullptr};

  const uint8_t* panel(int64_t p) const {
    return data.get() + static_cast<size_t>(p - first_panel) * panel_bytes;
  }
};

// Whether `w` (a 2-D f32/f16/bf16 tensor) can be packed: bf16 needs an even K.
bool CanPack(TensorView w);

// Repacks w [N, K] (CanPack(w) must hold); the rows are split over the pool.
std::unique_ptr<PackedWeight> PackWeight(TensorView w, ThreadPool& pool);

// One Gemm call's operands, shared by the threads; each computes a range of panels.
struct GemmArgs {
  const float* a = nullptr;  // f32 [m, k]
  // For the dot kernel only: `a` rounded to bf16 and packed by PackRowsBf16Pairs.
  const uint32_t* a_pairs = nullptr;
  int64_t m = 0;
  const PackedWeight* w = nullptr;
  float* out = nullptr;  // f32 [m, w->n]
};

// Exact f32 arithmetic: weights widened to f32 (exact), products and sums in f32. The result
// differs from the reference op only by summation order.
void GemmPanelsAvx512(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);
void GemmPanelsAvx2(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);
// bf16 weights times `a_pairs` (activations rounded to bf16) with VDPBF16PS, f32 accumulation:
// twice the FMA rate, for the compute-bound shapes (many rows).
void GemmPanelsAvx512Bf16Dot(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);

// Rows per block of the dot kernel's packed activations (and its register tile's rows).
inline constexpr int64_t kDotBlockRows = 8;

// Words of PackRowsBf16Pairs's output for m rows of length k.
inline int64_t PackedBf16PairsSize(int64_t m, int64_t k) {
  return (m + kDotBlockRows - 1) / kDotBlockRows * kDotBlockRows * (k / 2);
}

// Packs rows [row_begin, row_end) (whole blocks, or up to m) of a[m, k] (k even) for the dot
// kernel: rounded to bf16 (round to nearest even), as [m / 8][k / 2][8] 32-bit words, word
// (b, j, r) = the pair (a[8b + r][2j], a[8b + r][2j + 1]). A k step of a block is then 8
// consecutive words, so the kernel's broadcasts need no address arithmetic. Rows past m in the
// last block are zero.
void PackRowsBf16Pairs(const float* a, int64_t m, int64_t k, int64_t row_begin, int64_t row_end,
                       uint32_t* out);

}  // namespace iquest::cpu
