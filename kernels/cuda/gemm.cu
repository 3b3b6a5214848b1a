// GEMM on tensor cores: out[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n]), 16-bit inputs, f32
// accumulation and output. Both operands are K-major ("TN"), which is what mma.sync's row.col
// form and ldmatrix (without .trans) read directly.
//
// The mma.sync kernel (sm_80 and later):
//   - A CTA computes a kBM x kBN tile of `out` over a range of K tiles of kBK = 64 elements: each
//     tile row is 128 bytes, eight 16-byte chunks.
//   - cp.async (16 bytes, zero-filled past the edges of M, N and K) fills a ring of kStages
//     shared-memory stages, so that loads of tile kt + kStages - 1 overlap the math on tile kt.
//   - Shared memory is swizzled: chunk c of row r lives at chunk c ^ (r % 8). The 8 row
//     addresses of one ldmatrix phase then fall in 8 different 16-byte bank groups (no
//     conflicts), and the cp.async stores stay 16-byte aligned.
//   - Warps form a kWarpsM x kWarpsN grid; each holds (kBM / kWarpsM) x (kBN / kWarpsN) of
//     accumulators as m16n8k16 fragments.
// Three tile shapes by M:
//   - prefill (M > 256): 128 x 128, 8 warps, 4 stages (128 KB of shared memory);
//   - medium (64 < M <= 256): 64 x 128, 4 warps, 4 stages (96 KB);
//   - decode (M <= 64): kBM in {16, 32, 64} x 128, 4 warps along N, 5 stages. Decode reads
//     every weight once and is bound by memory bandwidth, so there are too few N tiles to
//     cover the SMs (N / 128 = 32 for N = 4096); K is split until about two CTAs per SM stream
//     weights. The splits write f32 partial sums into the caller's workspace, and a second
//     kernel adds them in a fixed order (deterministic, unlike atomics) with the bias.
// The SIMT kernel (gemm_simt.cu) handles any shape and alignment (k % 8 != 0, f32 weights) and
// is the second reference in gpu-check. The wgmma + TMA kernel for sm_90a lives in gemm_sm90.cu.
#include <algorithm>
#include <cstdint>
#include <mutex>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/mma_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kBK = 64;                // K elements per tile.
constexpr int kRowBytes = kBK * 2;     // One tile row of 16-bit elements: 128 bytes.
constexpr int kChunksPerRow = 8;       // 16-byte chunks per tile row.
constexpr int kMaxSplits = 16;         // Split-K ways at most.
constexpr int kMinKTilesPerSplit = 4;  // 256 K elements: fewer would not hide the pipeline fill.

struct MmaParams {
  const uint16_t* a;  // [m, k]
  const uint16_t* w;  // [n, k]
  const float* bias;  // [n] or null (ignored when partial != null)
  float* out;         // [m, n]
  float* partial;     // [splits, m, n] when K is split, else null
  int m, n, k;
  int k_tiles_per_split;
};

// Byte offset of 16-byte chunk `chunk` of tile row `row` (see the swizzle in the file comment).
__device__ __forceinline__ uint32_t SwizzledOffset(int row, int chunk) {
  return static_cast<uint32_t>(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
}

// Queues the cp.async loads of `rows` rows of K tile `k_tile` of `src` ([num_rows, k]) starting
// at row `row0`, into the tile at shared address `tile`. Rows past num_rows and chunks past k
// read nothing and are zero-filled (k % 8 == 0, so a chunk is wholly inside or outside).
template <int kRows, int kThreads>
__device__ __forceinline__ void LoadTile(uint32_t tile, const uint16_t* src, int row0, int num_rows,
                                         int k, int k_tile) {
  constexpr int kChunks = kRows * kChunksPerRow;
  static_assert(kChunks % kThreads == 0, "every thread loads the same number of chunks");
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int chunk_index = static_cast<int>(threadIdx.x) + i * kThreads;
    const int row = chunk_index / kChunksPerRow;
    const int chunk = chunk_index % kChunksPerRow;
    const int global_row = row0 + row;
    const int global_k = k_tile * kBK + chunk * 8;
    const bool inside = global_row < num_rows && global_k < k;
    const uint16_t* from = inside ? src + static_cast<int64_t>(global_row) * k + global_k : src;
    CpAsync16(tile + SwizzledOffset(row, chunk), from, inside);
  }
}

template <int kBM, int kBN, int kWarpsM, int kWarpsN, int kStages, bool kBf16>
__global__ void __launch_bounds__(kWarpsM* kWarpsN * 32) MmaGemmKernel(const MmaParams p) {
  constexpr int kThreads = kWarpsM * kWarpsN * 32;
  constexpr int kWarpM = kBM / kWarpsM;  // Rows of out per warp.
  constexpr int kWarpN = kBN / kWarpsN;  // Columns of out per warp.
  constexpr int kMmaM = kWarpM / 16;
  constexpr int kMmaN = kWarpN / 8;
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "whole m16 tiles and pairs of n8 tiles");
  constexpr uint32_t kStageBytes = (kBM + kBN) * kRowBytes;

  extern __shared__ __align__(128) uint8_t shared[];
  const uint32_t shared_base = SharedAddress(shared);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int warp_m = warp / kWarpsN;
  const int warp_n = warp % kWarpsN;
  const int m0 = static_cast<int>(blockIdx.y) * kBM;
  const int n0 = static_cast<int>(blockIdx.x) * kBN;

  const int num_k_tiles = (p.k + kBK - 1) / kBK;
  const int k_tile_begin = static_cast<int>(blockIdx.z) * p.k_tiles_per_split;
  const int k_tile_end = min(num_k_tiles, k_tile_begin + p.k_tiles_per_split);
  const int my_k_tiles = max(0, k_tile_end - k_tile_begin);

  auto load_stage = [&](int stage, int k_tile) {
    const uint32_t a_tile = shared_base + stage * kStageBytes;
    const uint32_t w_tile = a_tile + kBM * kRowBytes;
    LoadTile<kBM, kThreads>(a_tile, p.a, m0, p.m, p.k, k_tile);
    LoadTile<kBN, kThreads>(w_tile, p.w, n0, p.n, p.k, k_tile);
  };

  float acc[kMmaM][kMmaN][4];
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < kMmaN; ++j) {
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
    }
  }

  // Prologue: kStages - 1 tiles in flight. Empty groups are committed too, so that
  // wait_group<kStages - 2> below always means "the oldest tile has landed".
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < my_k_tiles) load_stage(s, k_tile_begin + s);
    CpAsyncCommit();
  }

  for (int t = 0; t < my_k_tiles; ++t) {
    CpAsyncWait<kStages - 2>();
    // Tile t is visible to every thread, and every thread is done with tile t - 1, whose stage
    // the load below overwrites.
    __syncthreads();
    const int next = t + kStages - 1;
    if (next < my_k_tiles) load_stage(next % kStages, k_tile_begin + next);
    CpAsyncCommit();

    const uint32_t a_tile = shared_base + (t % kStages) * kStageBytes;
    const uint32_t w_tile = a_tile + kBM * kRowBytes;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      // A fragments: lanes 0-15 address rows 0-15 at k chunk 2ks, lanes 16-31 the same rows at
      // chunk 2ks + 1; the four 8x8 matrices are a0..a3 of the m16n8k16 A operand.
      uint32_t a_frag[kMmaM][4];
#pragma unroll
      for (int i = 0; i < kMmaM; ++i) {
        const int row = warp_m * kWarpM + i * 16 + lane % 16;
        LdMatrixX4(a_frag[i], a_tile + SwizzledOffset(row, ks * 2 + lane / 16));
      }
      // B fragments for two n8 tiles per ldmatrix.x4: matrix q = lane / 8 covers n rows
      // (q / 2) * 8 .. +7 at k chunk 2ks + q % 2, giving b0, b1 of tile 2j and of tile 2j + 1.
      uint32_t b_frag[kMmaN][2];
#pragma unroll
      for (int j = 0; j < kMmaN / 2; ++j) {
        const int q = lane / 8;
        const int row = warp_n * kWarpN + j * 16 + (q / 2) * 8 + lane % 8;
        uint32_t b[4];
        LdMatrixX4(b, w_tile + SwizzledOffset(row, ks * 2 + q % 2));
        b_frag[2 * j][0] = b[0];
        b_frag[2 * j][1] = b[1];
        b_frag[2 * j + 1][0] = b[2];
        b_frag[2 * j + 1][1] = b[3];
      }
#pragma unroll
      for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
        for (int j = 0; j < kMmaN; ++j) {
          Mma16816<kBf16>(acc[i][j], a_frag[i], b_frag[j][0], b_frag[j][1]);
        }
      }
    }
  }
  CpAsyncWait<0>();

  // Epilogue. Fragment c0, c1 is row lane / 4, columns 2 * (lane % 4) + {0, 1}; c2, c3 is the
  // same 8 rows further down.
  float* dst =
      p.partial != nullptr ? p.partial + static_cast<int64_t>(blockIdx.z) * p.m * p.n : p.out;
  const float* bias = p.partial != nullptr ? nullptr : p.bias;
  // float2 stores need an even row length and an 8-byte aligned base (a view may start at an
  // odd float).
  const bool pairs_aligned = (p.n % 2) == 0 && reinterpret_cast<uintptr_t>(dst) % 8 == 0;
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < kMmaN; ++j) {
      const int col = n0 + warp_n * kWarpN + j * 8 + 2 * (lane % 4);
      const float bias0 = (bias != nullptr && col < p.n) ? bias[col] : 0.0f;
      const float bias1 = (bias != nullptr && col + 1 < p.n) ? bias[col + 1] : 0.0f;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = m0 + warp_m * kWarpM + i * 16 + lane / 4 + half * 8;
        if (row >= p.m) continue;
        float* out_row = dst + static_cast<int64_t>(row) * p.n;
        const float v0 = acc[i][j][2 * half] + bias0;
        const float v1 = acc[i][j][2 * half + 1] + bias1;
        if (pairs_aligned && col + 1 < p.n) {
          *reinterpret_cast<float2*>(out_row + col) = make_float2(v0, v1);
        } else {
          if (col < p.n) out_row[col] = v0;
          if (col + 1 < p.n) out_row[col + 1] = v1;
        }
      }
    }
  }
}

// out[m, n] = sum over splits of partial[s, m, n] (+ bias[n]), in split order.
__global__ void SplitKReduceKernel(const float* partial, const float* bias, float* out,
                                   int64_t num_elements, int n, int splits) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_elements;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = bias != nullptr ? bias[i % n] : 0.0f;
    for (int s = 0; s < splits; ++s) sum += partial[s * num_elements + i];
    out[i] = sum;
  }
}

int SmCount() {
  static int count = [] {
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    int sms = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  }();
  return count;
}

template <int kBM, int kBN, int kWarpsM, int kWarpsN, int kStages, bool kBf16>
void LaunchMma(const GemmArgs& args, cudaStream_t stream) {
  constexpr int kSharedBytes = kStages * (kBM + kBN) * kRowBytes;
  auto kernel = MmaGemmKernel<kBM, kBN, kWarpsM, kWarpsN, kStages, kBf16>;
  // The dynamic shared memory limit is per kernel; raise it once.
  static std::once_flag raised;
  std::call_once(raised, [&] {
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes));
  });
  const int m = static_cast<int>(args.m);
  const int n = static_cast<int>(args.n);
  const int k = static_cast<int>(args.k);
  const int tiles_m = (m + kBM - 1) / kBM;
  const int tiles_n = (n + kBN - 1) / kBN;
  // At least one K tile, so that k == 0 (out = bias) launches one split instead of dividing by
  // zero below; its CTAs find no K tiles of their own and write the bias.
  const int num_k_tiles = std::max(1, (k + kBK - 1) / kBK);
  // Split K while the tiles cover fewer than two waves of CTAs and each split keeps enough K
  // tiles to fill the pipeline; the workspace bounds the split too.
  int splits = 1;
  const size_t split_bytes = static_cast<size_t>(m) * n * sizeof(float);
  while (splits * 2 <= kMaxSplits && tiles_m * tiles_n * splits * 2 <= 2 * SmCount() &&
         num_k_tiles / (splits * 2) >= kMinKTilesPerSplit &&
         split_bytes * splits * 2 <= args.workspace_bytes) {
    splits *= 2;
  }
  const int k_tiles_per_split = (num_k_tiles + splits - 1) / splits;
  splits = (num_k_tiles + k_tiles_per_split - 1) / k_tiles_per_split;
  MmaParams p{static_cast<const uint16_t*>(args.a),
              static_cast<const uint16_t*>(args.w),
              args.bias,
              args.out,
              splits > 1 ? args.workspace : nullptr,
              m,
              n,
              k,
              k_tiles_per_split};
  const dim3 grid(tiles_n, tiles_m, splits);
  kernel<<<grid, kWarpsM * kWarpsN * 32, kSharedBytes, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (splits > 1) {
    SplitKReduce(args.workspace, splits, m, n, args.bias, args.out, stream);
  }
}

template <bool kBf16>
void MmaGemm(const GemmArgs& args, cudaStream_t stream) {
  if (args.m > 256) {
    LaunchMma<128, 128, 2, 4, 4, kBf16>(args, stream);
  } else if (args.m > 64) {
    LaunchMma<64, 128, 2, 2, 4, kBf16>(args, stream);
  } else if (args.m > 32) {
    LaunchMma<64, 128, 1, 4, 5, kBf16>(args, stream);
  } else if (args.m > 16) {
    LaunchMma<32, 128, 1, 4, 5, kBf16>(args, stream);
  } else {
    LaunchMma<16, 128, 1, 4, 5, kBf16>(args, stream);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool MmaSupports(const GemmArgs& args) {
  return (args.dtype == DType::kBF16 || args.dtype == DType::kF16) && args.k % 8 == 0 &&
         Aligned16(args.a) && Aligned16(args.w) && args.m <= INT32_MAX && args.n <= INT32_MAX &&
         args.k <= INT32_MAX;
}

}  // namespace

const char* GemmPathName(GemmPath path) {
  switch (path) {
    case GemmPath::kAuto:
      return "auto";
    case GemmPath::kSimt:
      return "simt";
    case GemmPath::kMmaSync:
      return "mma.sync";
    case GemmPath::kWgmma:
      return "wgmma";
  }
  return "?";
}

void SplitKReduce(const float* partial, int splits, int64_t m, int64_t n, const float* bias,
                  float* out, cudaStream_t stream) {
  const int64_t num_elements = m * n;
  if (num_elements == 0) return;
  const int threads = 256;
  const int blocks =
      static_cast<int>(std::min<int64_t>((num_elements + threads - 1) / threads, 4 * SmCount()));
  SplitKReduceKernel<<<blocks, threads, 0, stream>>>(partial, bias, out, num_elements,
                                                     static_cast<int>(n), splits);
  CUDA_CHECK_LAUNCH();
}

size_t GemmWorkspaceBytes(int64_t max_m, int64_t max_n) {
  // Sized for the decode shapes (m <= 64), which split most, into at most kMaxSplits; capped at
  // 64 MiB. Larger tiles split too when there are few of them, but only as far as the bytes
  // LaunchMma is given allow.
  const size_t wanted = static_cast<size_t>(std::min<int64_t>(max_m, 64)) *
                        static_cast<size_t>(max_n) * sizeof(float) * kMaxSplits;
  return std::min<size_t>(wanted, size_t{64} << 20);
}

void Gemm(const GemmArgs& args, GemmPath path, cudaStream_t stream) {
  CHECK(args.a != nullptr && args.w != nullptr && args.out != nullptr);
  CHECK(args.m >= 0 && args.n >= 0 && args.k >= 0);
  if (args.m == 0 || args.n == 0) return;
  if (path == GemmPath::kAuto) {
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    if (Sm90GemmAvailable(device) && Sm90GemmSupports(args)) {
      path = GemmPath::kWgmma;
    } else if (MmaSupports(args)) {
      path = GemmPath::kMmaSync;
    } else {
      path = GemmPath::kSimt;
    }
  }
  switch (path) {
    case GemmPath::kWgmma:
      CHECK(Sm90GemmSupports(args))
          << "wgmma cannot run m=" << args.m << " n=" << args.n << " k=" << args.k;
      GemmSm90(args, stream);
      return;
    case GemmPath::kMmaSync:
      CHECK(MmaSupports(args)) << "mma.sync needs 16-bit inputs, k % 8 == 0 and 16-byte "
                               << "aligned operands; k=" << args.k;
      if (args.dtype == DType::kBF16) {
        MmaGemm<true>(args, stream);
      } else {
        MmaGemm<false>(args, stream);
      }
      return;
    case GemmPath::kSimt:
    case GemmPath::kAuto:
      break;
  }
  GemmSimt(args, stream);
}

}  // namespace iquest::cuda
