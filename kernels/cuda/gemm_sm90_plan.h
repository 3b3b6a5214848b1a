// The host side of the Hopper GEMM (gemm_sm90.cu): how a GEMM is cut into work (tile width,
// swap-AB for few rows, split-K) and the TMA tensor maps its operands are read through.
#pragma once

#include <cuda.h>  // CUtensorMap (types only; libcuda is not linked)

#include <cstdint>

#include "common/dtype.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda::sm90_plan {

inline constexpr int kTileP = 128;  // P rows per CTA: 2 consumer warpgroups x 64
inline constexpr int kTileK = 64;   // K per stage: one 128-byte swizzle row of 16-bit
inline constexpr int kMaxSplits = 8;

struct Plan {
  bool swap_ab = false;
  int tile_q = 128;
  int64_t rows_p = 0;
  int64_t rows_q = 0;
  int64_t tiles_p = 0;
  int64_t tiles_q = 0;
  int64_t k_tiles = 0;
  int64_t k_tiles_per_split = 0;
  int64_t splits = 1;
  int num_sms = 1;
};

// The plan for `args` on a device of `num_sms` SMs.
Plan ChoosePlan(const GemmArgs& args, int num_sms);

// Tensor map of a row-major [rows, k] 16-bit matrix read in boxes of 64 (k) x box_rows, with
// the 128B swizzle the wgmma descriptors assume; out-of-bounds elements read as zero.
CUtensorMap MakeOperandMap(const void* base, int64_t rows, int64_t k, int box_rows, DType dtype);

}  // namespace iquest::cuda::sm90_plan
