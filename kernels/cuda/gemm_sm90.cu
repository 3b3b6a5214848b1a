// Hopper (sm_90a) GEMM: out[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n]), a and w bf16 or f16
// (both K-contiguous, the "TN" GEMM), f32 accumulate, f32 out. The generic fallbacks live in
// gemm.cu; this file is only the wgmma + TMA fast path behind Sm90GemmAvailable/Supports.
//
// Formulation. The kernel computes a generic D[p, q] = sum_k P[p, k] * Q[q, k] where P feeds
// wgmma's A operand (64 rows per warpgroup instruction) and Q feeds its B operand (N = the
// tile width kTileQ). Both operands are K-major in shared memory, which is what wgmma reads
// without a transpose (imm-trans-a = imm-trans-b = 0).
//   * Prefill (m >= 128): P = a (rows m), Q = w (rows n), D[p, q] -> out[p, q].
//   * Decode (m < 128), "swap-AB": P = w (rows n), Q = a (rows m), D[p, q] -> out[q, p]. The
//     weight rows fill wgmma's fixed 64-row M dimension and the few tokens become its N
//     (padded to 32/64/128 rather than to a 128-row M tile), and one Q tile covers all the
//     tokens, so the weight stream, which bounds decode, is read exactly once.
//
// CTA tile: 128 rows of P x kTileQ columns of Q x 64 of K per pipeline stage. kTileQ is 256 or
// 128 for prefill (256 where there are enough tiles to fill the GPU, else 128 to double the
// CTA count) and 32/64/128 for swap-AB (the token count rounded up). 64 K elements of a 16-bit
// type are exactly one 128-byte row, the width of the 128B swizzle, so each stage of each
// operand is a [rows][64] tile whose 8-row x 128-byte atoms TMA writes swizzled
// (CU_TENSOR_MAP_SWIZZLE_128B) and wgmma reads with the matching descriptor swizzle mode; the
// swizzle makes wgmma's shared-memory reads bank-conflict free.
//
// Warp roles (384 threads, 1 CTA per SM by shared memory):
//   * warpgroups 0 and 1 (consumers): warpgroup g owns P rows [64 g, 64 g + 64) of the tile
//     and keeps a 64 x kTileQ f32 accumulator in registers (kTileQ / 2 floats per thread).
//     Per stage it issues 4 wgmma m64nNk16 (K = 16 each), commits them as one group, and waits
//     with wait_group 1, so the tensor core always has the next group queued while the
//     previous stage is released to the producer.
//   * warpgroup 2 (producer): one thread issues the TMA loads for both operands into a ring
//     of kStages stages (4 to 8, whatever fits in ~200 KB) and never touches registers of
//     the math path. No setmaxnreg: the widest variant (kTileQ 256, 128 accumulator floats)
//     needs 158 registers, under the 168 that 384 threads at 1 CTA/SM get anyway.
// Synchronisation is two mbarriers per stage: full[s] (count 1; the producer's
// arrive.expect_tx plus the TMA's complete_tx bytes complete it) and empty[s] (count 8: lane 0
// of each consumer warp arrives once its wgmma reads of the stage are done). The n-th
// completion of a barrier has parity n & 1; a stage's u-th fill waits on empty's (u - 1)-th
// completion and the consumers wait on full's u-th.
//
// Edges: TMA zero-fills every element of a box outside [0, rows) x [0, k), so partial M/N
// tiles and the K tail need no special case in the main loop (zeros add nothing); the
// epilogue bounds-checks its stores. Stores go straight from the accumulator registers:
// each quad of lanes writes 8 consecutive floats of an out row (float2 each), or, swapped,
// the 8 lanes of a quad column write 8 consecutive n of one token: 32-byte full sectors.
//
// Split-K: where the output tiles cannot fill the SMs (decode, small prefill) and the caller
// gave a workspace, K is cut into ranges; each split writes f32 partial sums into
// workspace[split, m, n] and a small kernel sums the splits in a fixed order (deterministic)
// and adds the bias.
//
// Tensor maps are encoded on the host per call through the driver entry point
// cuTensorMapEncodeTiled (a pure host-side function, ~1 us; libcuda is not linked, so the
// binary loads without a driver) and passed as __grid_constant__ kernel parameters. A cache
// keyed by pointer+shape would save that microsecond but needs a lock and an eviction rule;
// per-call encoding is stateless and thread-safe.
//
// Scheduling: persistent, one CTA per SM; work units (tile x split) are handed out round-robin
// and rasterised in groups of 8 P-tiles for L2 reuse. The ring runs on across units, so the
// next unit's loads overlap the current unit's epilogue. No thread-block clusters / TMA
// multicast (each CTA loads its own operands; L2 absorbs the reuse).

#include <cuda.h>  // CUtensorMap and its enums (types only; libcuda is not linked)
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "common/check.h"
#include "common/dtype.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemm_sm90_plan.h"
#include "kernels/cuda/gemm_sm90_tile.cuh"
#include "kernels/cuda/sm90_ptx.cuh"

namespace iquest::cuda {
namespace {

using sm90_plan::ChoosePlan;
using sm90_plan::MakeOperandMap;
using sm90_plan::Plan;

using sm90::kConsumerWarpgroups;
using sm90::KernelParams;
using sm90::kRowBytes;
using sm90::kSwizzleAtomBytes;
using sm90::kThreads;
using sm90::kTileK;
using sm90::kTileP;
using sm90::TileConfig;

}  // namespace

// sm_90a device code. Only the sm_90a pass sees wgmma/TMA/mbarrier PTX; the sm_80 pass gets a
// kernel that traps (Sm90GemmAvailable keeps it from ever being launched there).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
namespace sm90 {
using namespace ::iquest::cuda::sm90_ptx;  // mbarrier, TMA, wgmma (sm90_ptx.cuh)
}  // namespace sm90
#endif  // __CUDA_ARCH__ && __CUDA_ARCH_FEAT_SM90_ALL

namespace {

template <int kTileQ, bool kSwapAB, bool kBf16>
__global__ void __launch_bounds__(kThreads, 1)
    GemmSm90Kernel(const __grid_constant__ CUtensorMap map_p,
                   const __grid_constant__ CUtensorMap map_q, const KernelParams params) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = TileConfig<kTileQ>;
  constexpr int kStages = Cfg::kStages;

  extern __shared__ uint8_t smem_raw[];
  // Stage s: P tile at ring + s * kStageBytes, Q tile kPBytes after it; then the barriers.
  const uint32_t ring =
      (sm90::SmemAddr(smem_raw) + kSwizzleAtomBytes - 1) & ~uint32_t{kSwizzleAtomBytes - 1};
  const uint32_t full_bars = ring + kStages * Cfg::kStageBytes;
  const uint32_t empty_bars = full_bars + kStages * 8;
  const int num_work = params.tiles_p * params.tiles_q * params.splits;

  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      sm90::BarrierInit(full_bars + 8 * s, 1);
      sm90::BarrierInit(empty_bars + 8 * s, sm90::kConsumerWarps);
    }
    // Make the initialised barriers visible to the async proxy (TMA complete_tx).
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (warpgroup == kConsumerWarpgroups) {
    // Producer: one thread streams every unit's K range through the ring.
    if (threadIdx.x == kConsumerWarpgroups * 128) {
      sm90::PrefetchTensorMap(&map_p);
      sm90::PrefetchTensorMap(&map_q);
      int stage = 0;
      int pass = 0;  // completed trips around the ring, over all units
      for (int work = static_cast<int>(blockIdx.x); work < num_work;
           work += static_cast<int>(gridDim.x)) {
        const sm90::WorkUnit unit = sm90::DecodeWork(params, work);
        const int row_p = unit.tile_p * kTileP;
        const int row_q = unit.tile_q * kTileQ;
        for (int i = 0; i < unit.k_tile_count; ++i) {
          // The first pass finds every stage free. Fill number `pass` of a stage waits for
          // the consumers' release number pass - 1 of it: the empty[] phase of that parity.
          if (pass > 0) sm90::BarrierWait(empty_bars + 8 * stage, (pass - 1) & 1);
          const uint32_t full_bar = full_bars + 8 * stage;
          const uint32_t dst_p = ring + stage * Cfg::kStageBytes;
          const int k_elem = (unit.k_tile_begin + i) * kTileK;
          // Out-of-bounds box elements are zero-filled and still counted, so the byte count
          // is always the full stage.
          sm90::BarrierArriveExpectTx(full_bar, Cfg::kStageBytes);
          sm90::TmaLoad2d(dst_p, &map_p, full_bar, k_elem, row_p);
          sm90::TmaLoad2d(dst_p + Cfg::kPBytes, &map_q, full_bar, k_elem, row_q);
          if (++stage == kStages) {
            stage = 0;
            ++pass;
          }
        }
      }
    }
    return;
  }

  // Consumers.
  constexpr int kAccFloats = kTileQ / 2;  // per consumer thread: 64 x kTileQ / 128
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  // Warpgroup g reads P rows [64 g, 64 g + 64): 64 rows x 128 B = 8 KB into the P tile.
  const uint64_t desc_p0 = sm90::MakeSmemDesc(ring + warpgroup * 64 * kRowBytes);
  const uint64_t desc_q0 = sm90::MakeSmemDesc(ring + Cfg::kPBytes);

  int stage = 0;
  uint32_t full_parity = 0;  // parity of the full[] phase the current trip waits for
  for (int work = static_cast<int>(blockIdx.x); work < num_work;
       work += static_cast<int>(gridDim.x)) {
    const sm90::WorkUnit unit = sm90::DecodeWork(params, work);
    float acc[kAccFloats];
#pragma unroll
    for (int i = 0; i < kAccFloats; ++i) acc[i] = 0.0f;

    int prev_stage = 0;
    for (int i = 0; i < unit.k_tile_count; ++i) {
      sm90::BarrierWait(full_bars + 8 * stage, full_parity);
      const uint64_t stage_offset = static_cast<uint64_t>(stage * Cfg::kStageBytes) >> 4;
      sm90::FenceAccumulators(acc);
      sm90::WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kTileK / sm90::kWgmmaK; ++kk) {
        // +32 bytes (>> 4 = 2) per 16-element K step inside the 128-byte swizzled row.
        const uint64_t k_offset = static_cast<uint64_t>(kk * sm90::kWgmmaK * 2) >> 4;
        sm90::Wgmma<kTileQ>::template Run<kBf16>(acc, desc_p0 + stage_offset + k_offset,
                                                 desc_q0 + stage_offset + k_offset);
      }
      sm90::WgmmaCommit();
      // At most this stage's group is still in flight: the previous stage's wgmmas have
      // finished reading shared memory, so that stage goes back to the producer.
      sm90::WgmmaWait<1>();
      sm90::FenceAccumulators(acc);
      if (i > 0 && lane == 0) sm90::BarrierArrive(empty_bars + 8 * prev_stage);
      prev_stage = stage;
      if (++stage == kStages) {
        stage = 0;
        full_parity ^= 1;
      }
    }
    sm90::WgmmaWait<0>();
    sm90::FenceAccumulators(acc);
    // The unit's last stage is free too; the producer may need it for the next unit.
    if (unit.k_tile_count > 0 && lane == 0) sm90::BarrierArrive(empty_bars + 8 * prev_stage);

    // Epilogue: straight from registers (see the fragment layout at Wgmma).
    float* dst = params.out + static_cast<int64_t>(unit.split) * params.split_stride;
    const int warp_in_group = warp % 4;
    const int p_base = unit.tile_p * kTileP + warpgroup * 64 + warp_in_group * 16 + lane / 4;
    const int q_base = unit.tile_q * kTileQ + 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < kTileQ / 8; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        sm90::StorePair<kSwapAB>(dst, params, p_base + 8 * h, q_base + 8 * j, acc[4 * j + 2 * h],
                                 acc[4 * j + 2 * h + 1]);
      }
    }
  }
#else
  __trap();  // Never launched: Sm90GemmAvailable is false without the sm_90a cubin.
#endif
}

// ---------------------------------------------------------------------------------------------
// Host side.

template <int kTileQ, bool kSwapAB, bool kBf16>
void Launch(const GemmArgs& args, const Plan& plan, cudaStream_t stream) {
  using Cfg = TileConfig<kTileQ>;
  const void* p_base = kSwapAB ? args.w : args.a;
  const void* q_base = kSwapAB ? args.a : args.w;
  const CUtensorMap map_p = MakeOperandMap(p_base, plan.rows_p, args.k, kTileP, args.dtype);
  const CUtensorMap map_q = MakeOperandMap(q_base, plan.rows_q, args.k, kTileQ, args.dtype);

  const bool split = plan.splits > 1;
  KernelParams params;
  params.out = split ? args.workspace : args.out;
  params.bias = split ? nullptr : args.bias;
  params.split_stride = args.m * args.n;
  params.rows_p = static_cast<int>(plan.rows_p);
  params.rows_q = static_cast<int>(plan.rows_q);
  params.ld_out = static_cast<int>(args.n);
  params.tiles_p = static_cast<int>(plan.tiles_p);
  params.tiles_q = static_cast<int>(plan.tiles_q);
  params.k_tiles = static_cast<int>(plan.k_tiles);
  params.k_tiles_per_split = static_cast<int>(plan.k_tiles_per_split);
  params.splits = static_cast<int>(plan.splits);
  params.vec2 = (args.n % 2 == 0 && reinterpret_cast<uintptr_t>(params.out) % 8 == 0) ? 1 : 0;

  const auto kernel = GemmSm90Kernel<kTileQ, kSwapAB, kBf16>;
  // The shared-memory opt-in is per device and sticks: set it on first use of each device
  // (so not again inside a stream capture of later steps). Racing first calls set it twice,
  // which is harmless.
  static std::atomic<uint64_t> configured_devices{0};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t device_bit = device < 64 ? uint64_t{1} << device : 0;
  if (device_bit == 0 || (configured_devices.load(std::memory_order_acquire) & device_bit) == 0) {
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    configured_devices.fetch_or(device_bit, std::memory_order_release);
  }
  // Persistent: at most one CTA per SM (shared memory allows no more), looping over units.
  const int64_t num_work = plan.tiles_p * plan.tiles_q * plan.splits;
  CHECK(num_work <= INT32_MAX) << "too many tiles: " << num_work;
  const int64_t ctas = std::min<int64_t>(num_work, plan.num_sms);
  kernel<<<static_cast<unsigned>(ctas), kThreads, Cfg::kSmemBytes, stream>>>(map_p, map_q, params);
  CUDA_CHECK_LAUNCH();

  if (split) {
    SplitKReduce(args.workspace, static_cast<int>(plan.splits), args.m, args.n, args.bias, args.out,
                 stream);
  }
}

template <bool kBf16>
void Dispatch(const GemmArgs& args, const Plan& plan, cudaStream_t stream) {
  if (plan.swap_ab) {
    switch (plan.tile_q) {
      case 32:
        return Launch<32, true, kBf16>(args, plan, stream);
      case 64:
        return Launch<64, true, kBf16>(args, plan, stream);
      default:
        return Launch<128, true, kBf16>(args, plan, stream);
    }
  }
  if (plan.tile_q == 256) return Launch<256, false, kBf16>(args, plan, stream);
  return Launch<128, false, kBf16>(args, plan, stream);
}

constexpr int kMaxCachedDevices = 64;
// Per device: 0 = not yet known, 1 = available, 2 = not available.
std::atomic<int> g_available[kMaxCachedDevices];

}  // namespace

bool Sm90GemmAvailable(int device) {
  if (device < 0) return false;
  if (device < kMaxCachedDevices) {
    const int cached = g_available[device].load(std::memory_order_relaxed);
    if (cached != 0) return cached == 1;
  }
  int major = 0;
  int minor = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  // sm_90a code runs on compute capability 9.0 only.
  if (major != 9 || minor != 0) {
    if (device < kMaxCachedDevices) g_available[device].store(2, std::memory_order_relaxed);
    return false;
  }
  // The device is 9.0; is the sm_90a cubin in this binary? The runtime picks the best cubin
  // for the current device: binaryVersion 90 means the sm_90a one, 80 the sm_80 fallback
  // whose kernel traps. Only the current device can be asked without switching devices, so
  // another device gets a conservative, uncached "no" (Gemm always asks about the current).
  int current = -1;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) return false;
  cudaFuncAttributes attributes;
  CUDA_CHECK(cudaFuncGetAttributes(&attributes, GemmSm90Kernel<128, false, true>));
  const bool available = attributes.binaryVersion >= 90;
  if (device < kMaxCachedDevices) {
    g_available[device].store(available ? 1 : 2, std::memory_order_relaxed);
  }
  return available;
}

bool Sm90GemmSupports(const GemmArgs& args) {
  if (args.dtype != DType::kBF16 && args.dtype != DType::kF16) return false;
  if (args.a == nullptr || args.w == nullptr || args.out == nullptr) return false;
  if (args.m < 1 || args.n < 1 || args.k < 1) return false;
  // TMA: the row stride (k * 2 bytes) must be a multiple of 16 and the base 16-byte aligned.
  if (args.k % 8 != 0) return false;
  if (reinterpret_cast<uintptr_t>(args.a) % 16 != 0) return false;
  if (reinterpret_cast<uintptr_t>(args.w) % 16 != 0) return false;
  if (reinterpret_cast<uintptr_t>(args.out) % alignof(float) != 0) return false;
  // Coordinates (plus a tile of slack) are 32-bit in the kernel and in the TMA instruction.
  constexpr int64_t kMaxExtent = int64_t{1} << 30;
  if (args.m > kMaxExtent || args.n > kMaxExtent || args.k > kMaxExtent) return false;
  // Keeps the tile count (gridDim.x) far below 2^31.
  if (args.m * args.n > (int64_t{1} << 40)) return false;
  return true;
}

void GemmSm90(const GemmArgs& args, cudaStream_t stream) {
  CHECK(Sm90GemmSupports(args)) << "m=" << args.m << " n=" << args.n << " k=" << args.k;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  int num_sms = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
  const Plan plan = ChoosePlan(args, std::max(num_sms, 1));
  if (args.dtype == DType::kBF16) {
    Dispatch<true>(args, plan, stream);
  } else {
    Dispatch<false>(args, plan, stream);
  }
}

}  // namespace iquest::cuda
