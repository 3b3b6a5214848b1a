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
  std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, nullptr};

  const uint8_t* panel(int64_t p) const {
    return data.get() + static_cast<size_t>(p) * panel_bytes;
  }
};

// Whether `w` (a 2-D f32/f16/bf16 tensor) can be packed: bf16 needs an even K.
bool CanPack(TensorView w);

// Repacks w [N, K] (CanPack(w) must hold); the rows are split over the pool.
std::unique_ptr<PackedWeight> PackWeight(TensorView w, ThreadPool& pool);

// One Gemm call's operands, shared by the threads; each computes a range of panels.
struct GemmArgs {
  const float* a = nullptr;          // f32 [m, k]
  const uint16_t* a_bf16 = nullptr;  // bf16 [m, k]: `a` rounded, for the dot kernel only
  int64_t m = 0;
  const PackedWeight* w = nullptr;
  float* out = nullptr;  // f32 [m, w->n]
};

// Exact f32 arithmetic: weights widened to f32 (exact), products and sums in f32. The result
// differs from the reference op only by summation order.
void GemmPanelsAvx512(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);
void GemmPanelsAvx2(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);
// bf16 weights times `a_bf16` (activations rounded to bf16) with VDPBF16PS, f32 accumulation:
// twice the FMA rate, for the compute-bound shapes (many rows).
void GemmPanelsAvx512Bf16Dot(const GemmArgs& args, int64_t panel_begin, int64_t panel_end);

// Rounds a[m, k] to bf16 (round to nearest even) into out; split over rows.
void RoundRowsToBf16(const float* a, int64_t num_values, uint16_t* out);

}  // namespace iquest::cpu
