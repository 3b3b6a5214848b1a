// The Hopper GEMM's tile shapes, kernel parameters and work decomposition (gemm_sm90.cu has the
// design, the kernel and the launch): what the device code and its host launch share, plus
// the device helpers that are not PTX (those are in sm90_ptx.cuh): the epilogue's pair store
// and the persistent loop's unit numbering. Included by gemm_sm90.cu only.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/gemm_sm90_plan.h"
#include "kernels/cuda/sm90_ptx.cuh"

namespace iquest::cuda::sm90 {

using sm90_plan::kTileK;
using sm90_plan::kTileP;
inline constexpr int kRowBytes = kTileK * 2;  // 128: bytes of one tile row in shared memory
using sm90_ptx::kSwizzleAtomBytes;
inline constexpr int kConsumerWarpgroups = 2;
inline constexpr int kThreads = 128 * (kConsumerWarpgroups + 1);  // + 1 producer warpgroup
inline constexpr int kRingBudgetBytes = 200 * 1024;  // of the 227 KB an H100/H200 CTA may have
inline constexpr int kMaxStages = 8;

template <int kTileQ>
struct TileConfig {
  static_assert(kTileQ % 32 == 0 && kTileQ >= 32 && kTileQ <= 256, "wgmma N of this file");
  static constexpr int kPBytes = kTileP * kRowBytes;
  static constexpr int kQBytes = kTileQ * kRowBytes;
  static constexpr int kStageBytes = kPBytes + kQBytes;
  static constexpr int kStages = std::min(kMaxStages, kRingBudgetBytes / kStageBytes);
  // Ring, then full[] and empty[] mbarriers (8 bytes each), plus slack to align the ring to
  // the 1024-byte swizzle atom (the runtime only guarantees 16-byte alignment).
  static constexpr int kSmemBytes = kStages * kStageBytes + 2 * kStages * 8 + kSwizzleAtomBytes;
  // Every stage base and every 64-row warpgroup slice must stay swizzle-atom aligned.
  static_assert(kPBytes % kSwizzleAtomBytes == 0 && kQBytes % kSwizzleAtomBytes == 0);
  static_assert(kStages >= 2);
};

struct KernelParams {
  float* out;            // out, or the split-K workspace when splits > 1
  const float* bias;     // [n] or null (null for split partials: the reduction adds it)
  int64_t split_stride;  // elements between the splits' [m, n] slices of `out`
  int rows_p;            // rows of P: m, or n when swapped
  int rows_q;            // rows of Q: n, or m when swapped
  int ld_out;            // n: the row stride of out[m, n]
  int tiles_p;           // ceil(rows_p / kTileP)
  int tiles_q;           // ceil(rows_q / kTileQ)
  int k_tiles;           // ceil(k / kTileK)
  int k_tiles_per_split;
  int splits;  // K splits (gridDim is independent: the kernel is persistent)
  int vec2;    // nonzero: out rows allow 8-byte float2 stores (n even, out aligned)
};

// ---------------------------------------------------------------------------------------------
// sm_90a device helpers (the sm_80 pass compiles only the trapping kernel stub).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
inline constexpr int kWgmmaK = 16;  // K of one wgmma m64nNk16
inline constexpr int kConsumerWarps = kConsumerWarpgroups * 4;
inline constexpr int kRasterGroup = 8;  // P-tiles per raster group

// Stores D[p, q] and D[p, q + 1] (out[p, q..q+1], or out[q..q+1, p] when swapped), adding the
// bias and dropping what falls outside [0, rows_p) x [0, rows_q).
template <bool kSwapAB>
__device__ __forceinline__ void StorePair(float* dst, const KernelParams& params, int p, int q,
                                          float v0, float v1) {
  if (p >= params.rows_p) return;
  const bool has0 = q < params.rows_q;
  const bool has1 = q + 1 < params.rows_q;
  if constexpr (kSwapAB) {
    // p indexes n, q indexes m. The 8 lanes sharing lane % 4 write 8 consecutive n of one
    // token: 32-byte sectors.
    const float b = params.bias != nullptr ? __ldg(params.bias + p) : 0.0f;
    if (has0) dst[static_cast<int64_t>(q) * params.ld_out + p] = v0 + b;
    if (has1) dst[static_cast<int64_t>(q + 1) * params.ld_out + p] = v1 + b;
  } else {
    if (params.bias != nullptr) {
      if (has0) v0 += __ldg(params.bias + q);
      if (has1) v1 += __ldg(params.bias + q + 1);
    }
    float* row = dst + static_cast<int64_t>(p) * params.ld_out;
    if (params.vec2 != 0 && has1) {
      *reinterpret_cast<float2*>(row + q) = make_float2(v0, v1);
    } else {
      if (has0) row[q] = v0;
      if (has1) row[q + 1] = v1;
    }
  }
}

// A unit of work is one kTileP x kTileQ tile of D over the K range of one split. Work units
// are numbered split-major, w = split * tiles + tile, and the grid is persistent: CTA b takes
// units b, b + gridDim.x, ... The ring's stage/phase counters run on across units, so the
// producer fills the next unit's stages while the consumers still run the epilogue of the
// current one. Preconditions (host): every split's K range is non-empty; the tensor maps use
// boxes {64, kTileP} (P) and {64, kTileQ} (Q) with the 128B swizzle.
struct WorkUnit {
  int tile_p;
  int tile_q;
  int split;
  int k_tile_begin;
  int k_tile_count;
};

__device__ __forceinline__ WorkUnit DecodeWork(const KernelParams& params, int work) {
  const int tiles = params.tiles_p * params.tiles_q;
  WorkUnit unit;
  unit.split = work / tiles;
  const int tile = work - unit.split * tiles;
  // Grouped rasterisation: runs of kRasterGroup P-tiles share each Q tile, so the CTAs in
  // flight together reuse both operands from L2.
  const int tiles_per_group = kRasterGroup * params.tiles_q;
  const int first_p = (tile / tiles_per_group) * kRasterGroup;
  const int group_rows = min(params.tiles_p - first_p, kRasterGroup);
  const int in_group = tile % tiles_per_group;
  unit.tile_p = first_p + in_group % group_rows;
  unit.tile_q = in_group / group_rows;
  unit.k_tile_begin = unit.split * params.k_tiles_per_split;
  unit.k_tile_count = min(params.k_tiles - unit.k_tile_begin, params.k_tiles_per_split);
  return unit;
}

#endif  // __CUDA_ARCH__ && __CUDA_ARCH_FEAT_SM90_ALL

}  // namespace iquest::cuda::sm90
