// The tensor-core paged-attention kernel (bf16 cache, head_dim 64 or 128, power-of-two block
// size) and its two launch configurations, decode and prefill. The design (rows of a GQA
// group, the cp.async ring, the online softmax, partitions) is described in attention.cu,
// which also holds the dispatch.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "common/check.h"
#include "kernels/cuda/attention_params.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma_util.cuh"

namespace iquest::cuda::attention {
namespace {

// ------------------------------------------------------------------------------------------
// PTX wrappers (sm_80+).

// Two floats as a bf16x2 word, `lo` in the low half.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// 16-byte chunk index of (row, chunk) in a tile of rows of kChunks 16-byte chunks: the chunk
// is XORed with row % 8 so that the 8 rows one ldmatrix phase reads hit 8 different bank groups.
template <int kChunks>
__device__ __forceinline__ int Swizzle(int row, int chunk) {
  static_assert(kChunks % 8 == 0, "rows must span a multiple of 128 bytes");
  return row * kChunks + (chunk ^ (row & 7));
}

// ------------------------------------------------------------------------------------------
// Tensor-core kernel. kWarpsM warps along rows (16 rows each), kWarpsN warps along the keys of
// a tile, kStages K/V tiles in flight.
template <int kHeadDim, int kWarpsM, int kWarpsN, int kStages, Kind kKind>
struct MmaConfig {
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kRows = 16 * kWarpsM;
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kQBytes = kRows * kHeadDim * 2;
  static constexpr int kStageBytes = 2 * kTileKeys * kHeadDim * 2;  // K and V tile
  static constexpr int kMergeBytes = kWarpsN * kRows * (kHeadDim + 2) * 4;
  // The q tile passes through the last stage before the first load into it.
  static_assert(kQBytes <= kStageBytes, "the q tile must fit in a stage");
  static constexpr int kSmemBytes =
      kStages * kStageBytes > kMergeBytes ? kStages* kStageBytes : kMergeBytes;
};

// Grid (row_tiles * num_partitions, num_kv_heads, num_seqs), block kThreads; dynamic smem
// MmaConfig::kSmemBytes. Cache dtype bf16.
template <int kHeadDim, int kWarpsM, int kWarpsN, int kStages, Kind kKind>
__global__ void __launch_bounds__(32 * kWarpsM * kWarpsN)
    AttentionMmaKernel(const AttentionParams p) {
  using Config = MmaConfig<kHeadDim, kWarpsM, kWarpsN, kStages, kKind>;
  constexpr int kThreads = Config::kThreads;
  constexpr int kRows = Config::kRows;
  constexpr int kChunks = Config::kChunks;
  constexpr int kKeysPerWarp = kTileKeys / kWarpsN;
  constexpr int kScoreTiles = kKeysPerWarp / 8;  // n8 tiles of S per warp
  constexpr int kKSteps = kHeadDim / 16;         // k16 steps of Q K^T
  constexpr int kDimTiles = kHeadDim / 8;        // n8 tiles of O
  static_assert(kScoreTiles % 2 == 0 && kDimTiles % 2 == 0, "tiles go in pairs");

  const int seq = static_cast<int>(blockIdx.z);
  const int kv_head = static_cast<int>(blockIdx.y);
  const int q_begin = p.query_start_loc[seq];
  const int num_queries = p.query_start_loc[seq + 1] - q_begin;
  if (!Covers<kKind>(num_queries)) return;
  const int seq_len = p.seq_lens[seq];
  const int part = static_cast<int>(blockIdx.x) % p.num_partitions;
  // Row tiles in reverse: the last (causally longest) ones start first, which shortens the tail.
  const int num_row_tiles = static_cast<int>(gridDim.x) / p.num_partitions;
  const int row_tile = num_row_tiles - 1 - static_cast<int>(blockIdx.x) / p.num_partitions;
  const int group = p.group_size;
  const int num_rows = num_queries * group;
  const int row0 = row_tile * kRows;
  if (row0 >= num_rows) return;
  const int first_pos = seq_len - num_queries;  // Position of query token 0.
  const int max_pos = first_pos + (min(row0 + kRows, num_rows) - 1) / group;
  // Keys before the first row's window are seen by no row of the tile.
  const int key_begin = max(part * p.partition_tokens, WindowStart(p, first_pos + row0 / group));
  const int key_end = min(min(key_begin + p.partition_tokens, seq_len), max_pos + 1);
  // Rows that end before this partition ignore it (the reduction reads only partitions that
  // hold at least one of a row's keys).
  if (key_end <= key_begin) return;
  const bool direct = p.num_partitions == 1 || seq_len <= p.partition_tokens;

  extern __shared__ uint4 smem[];
  uint4* kv_smem = smem;  // [kStages][K, V][kTileKeys][kChunks]
  // [kRows][kChunks] in the last stage, which the prologue leaves empty.
  uint4* q_smem = smem + (kStages - 1) * Config::kStageBytes / 16;
  float* merge_smem = reinterpret_cast<float*>(smem);  // Reused after the key loop.

  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int warp_m = warp % kWarpsM;
  const int warp_n = warp / kWarpsM;
  const int matrix = lane / 8;  // Which 8x8 matrix of an ldmatrix.x4 this lane addresses.

  // K/V tile loader: tile rows are token positions [tile_key0, tile_key0 + 64).
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const __nv_bfloat16* k_cache = static_cast<const __nv_bfloat16*>(p.k_cache);
  const __nv_bfloat16* v_cache = static_cast<const __nv_bfloat16*>(p.v_cache);
  const uint32_t kv_smem_address = SharedAddress(kv_smem);
  auto load_tile = [&](int tile_key0, int stage) {
#pragma unroll
    for (int i = 0; i < kTileKeys * kChunks / kThreads; ++i) {
      const int c = tid + i * kThreads;
      const int key = c / kChunks;
      const int chunk = c % kChunks;
      const int pos = tile_key0 + key;
      const bool valid = pos < key_end;
      int64_t offset = 0;
      if (valid) {
        const int64_t block = block_table[pos >> p.block_shift];
        offset = ((block * p.num_kv_heads + kv_head) * p.block_size + (pos & (p.block_size - 1))) *
                     kHeadDim +
                 chunk * 8;
      }
      const uint32_t k_dst =
          kv_smem_address + (stage * 2 * kTileKeys * kChunks + Swizzle<kChunks>(key, chunk)) * 16;
      const uint32_t v_dst = k_dst + kTileKeys * kChunks * 16;
      CpAsync16(k_dst, k_cache + offset, valid);
      CpAsync16(v_dst, v_cache + offset, valid);
    }
  };

  const int num_tiles = (key_end - key_begin + kTileKeys - 1) / kTileKeys;
  // Start the K/V pipeline before the q tile so that the loads overlap it.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) load_tile(key_begin + s * kTileKeys, s);
    CpAsyncCommit();
  }

  // q tile -> bf16 shared memory (zeros for padding rows).
  for (int c = tid; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks;
    const int chunk = c % kChunks;
    const int row = row0 + r;
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (row < num_rows) {
      const int head = kv_head * group + row % group;
      const float* src =
          p.q + (static_cast<int64_t>(q_begin + row / group) * p.num_heads + head) * kHeadDim +
          chunk * 8;
      const float4 a = *reinterpret_cast<const float4*>(src);
      const float4 b = *reinterpret_cast<const float4*>(src + 4);
      packed = make_uint4(PackBf16(a.x, a.y), PackBf16(a.z, a.w), PackBf16(b.x, b.y),
                          PackBf16(b.z, b.w));
    }
    q_smem[Swizzle<kChunks>(r, chunk)] = packed;
  }
  __syncthreads();

  // Q fragments (A operand), kept in registers for the whole key loop.
  const uint32_t q_smem_address = SharedAddress(q_smem);
  uint32_t q_frag[kKSteps][4];
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    const int r = warp_m * 16 + (matrix & 1) * 8 + lane % 8;
    LdMatrixX4(q_frag[ks], q_smem_address + Swizzle<kChunks>(r, ks * 2 + matrix / 2) * 16);
  }
  __syncthreads();  // The first iteration below refills the stage that held q.

  // This thread's two rows of the C fragments: lane / 4 and lane / 4 + 8 of the warp's 16.
  const int row_a = row0 + warp_m * 16 + lane / 4;
  const int row_b = row_a + 8;
  const int pos_a = row_a < num_rows ? first_pos + row_a / group : -1;
  const int pos_b = row_b < num_rows ? first_pos + row_b / group : -1;
  const int lo_a = WindowStart(p, pos_a);  // Window starts (0 without a window).
  const int lo_b = WindowStart(p, pos_b);

  float o[kDimTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDimTiles; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  }
  float max_a = kNegInf, max_b = kNegInf;  // Running maxima (log2 units).
  float sum_a = 0.0f, sum_b = 0.0f;        // This thread's part of the running sums.

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int next = tile + kStages - 1;
    if (next < num_tiles) load_tile(key_begin + next * kTileKeys, next % kStages);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();
    __syncthreads();

    const int stage = tile % kStages;
    const uint32_t k_address = kv_smem_address + stage * 2 * kTileKeys * kChunks * 16;
    const uint32_t v_address = k_address + kTileKeys * kChunks * 16;
    const int warp_key0 = warp_n * kKeysPerWarp;  // Within the tile.

    // S = Q K^T over this warp's keys.
    float s[kScoreTiles][4];
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
    }
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
      for (int nt = 0; nt < kScoreTiles; nt += 2) {
        uint32_t k_frag[4];
        const int key = warp_key0 + nt * 8 + (matrix / 2) * 8 + lane % 8;
        LdMatrixX4(k_frag, k_address + Swizzle<kChunks>(key, ks * 2 + matrix % 2) * 16);
        Mma16816(s[nt], q_frag[ks], k_frag[0], k_frag[1]);
        Mma16816(s[nt + 1], q_frag[ks], k_frag[2], k_frag[3]);
      }
    }

    // Causal / window / partition mask, scale, and the online softmax.
    const int tile_key0 = key_begin + tile * kTileKeys + warp_key0;
    float tile_max_a = kNegInf, tile_max_b = kNegInf;
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = tile_key0 + nt * 8 + (lane % 4) * 2 + e;
        const bool in_range = key < key_end;
        s[nt][e] = in_range && key <= pos_a && key >= lo_a ? s[nt][e] * p.scale_log2 : kNegInf;
        s[nt][2 + e] =
            in_range && key <= pos_b && key >= lo_b ? s[nt][2 + e] * p.scale_log2 : kNegInf;
        tile_max_a = fmaxf(tile_max_a, s[nt][e]);
        tile_max_b = fmaxf(tile_max_b, s[nt][2 + e]);
      }
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      tile_max_a = fmaxf(tile_max_a, __shfl_xor_sync(0xffffffffu, tile_max_a, offset));
      tile_max_b = fmaxf(tile_max_b, __shfl_xor_sync(0xffffffffu, tile_max_b, offset));
    }
    const float new_max_a = fmaxf(max_a, tile_max_a);
    const float new_max_b = fmaxf(max_b, tile_max_b);
    // A row with no key yet keeps max -inf; exponentiate against 0 so that exp2 gives 0.
    const float ref_a = new_max_a == kNegInf ? 0.0f : new_max_a;
    const float ref_b = new_max_b == kNegInf ? 0.0f : new_max_b;
    const float alpha_a = exp2f(max_a - ref_a);
    const float alpha_b = exp2f(max_b - ref_b);
    max_a = new_max_a;
    max_b = new_max_b;
    sum_a *= alpha_a;
    sum_b *= alpha_b;
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - ref_a);
      s[nt][1] = exp2f(s[nt][1] - ref_a);
      s[nt][2] = exp2f(s[nt][2] - ref_b);
      s[nt][3] = exp2f(s[nt][3] - ref_b);
      sum_a += s[nt][0] + s[nt][1];
      sum_b += s[nt][2] + s[nt][3];
    }
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) {
      o[dt][0] *= alpha_a;
      o[dt][1] *= alpha_a;
      o[dt][2] *= alpha_b;
      o[dt][3] *= alpha_b;
    }

    // O += P V: P straight from the S accumulators (bf16), V through ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < kScoreTiles / 2; ++kk) {
      const uint32_t p_frag[4] = {PackBf16(s[2 * kk][0], s[2 * kk][1]),
                                  PackBf16(s[2 * kk][2], s[2 * kk][3]),
                                  PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dt = 0; dt < kDimTiles; dt += 2) {
        uint32_t v_frag[4];
        const int key = warp_key0 + kk * 16 + (matrix % 2) * 8 + lane % 8;
        LdMatrixX4Trans(v_frag, v_address + Swizzle<kChunks>(key, dt + matrix / 2) * 16);
        Mma16816(o[dt], p_frag, v_frag[0], v_frag[1]);
        Mma16816(o[dt + 1], p_frag, v_frag[2], v_frag[3]);
      }
    }
    __syncthreads();  // The stage is refilled by the next iteration's load.
  }
  CpAsyncWait<0>();
  __syncthreads();

  // Each warp's (max, sum, O) -> shared memory: merge_o [kWarpsN][kRows][kHeadDim], then
  // merge_ml [kWarpsN][kRows][2].
#pragma unroll
  for (int offset = 1; offset < 4; offset *= 2) {
    sum_a += __shfl_xor_sync(0xffffffffu, sum_a, offset);
    sum_b += __shfl_xor_sync(0xffffffffu, sum_b, offset);
  }
  float* merge_o = merge_smem;
  float* merge_ml = merge_smem + kWarpsN * kRows * kHeadDim;
  const int local_a = warp_m * 16 + lane / 4;
  const int local_b = local_a + 8;
#pragma unroll
  for (int dt = 0; dt < kDimTiles; ++dt) {
    const int d = dt * 8 + (lane % 4) * 2;
    float* out_a = merge_o + (warp_n * kRows + local_a) * kHeadDim + d;
    float* out_b = merge_o + (warp_n * kRows + local_b) * kHeadDim + d;
    *reinterpret_cast<float2*>(out_a) = make_float2(o[dt][0], o[dt][1]);
    *reinterpret_cast<float2*>(out_b) = make_float2(o[dt][2], o[dt][3]);
  }
  if (lane % 4 == 0) {
    merge_ml[(warp_n * kRows + local_a) * 2] = max_a;
    merge_ml[(warp_n * kRows + local_a) * 2 + 1] = sum_a;
    merge_ml[(warp_n * kRows + local_b) * 2] = max_b;
    merge_ml[(warp_n * kRows + local_b) * 2 + 1] = sum_b;
  }
  __syncthreads();

  // Merge the kWarpsN key slices of every row and write the row (or its partial).
  for (int idx = tid; idx < kRows * kHeadDim; idx += kThreads) {
    const int r = idx / kHeadDim;
    const int d = idx % kHeadDim;
    const int row = row0 + r;
    if (row >= num_rows) break;  // Rows grow with idx.
    float row_max = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarpsN; ++w) row_max = fmaxf(row_max, merge_ml[(w * kRows + r) * 2]);
    const float ref = row_max == kNegInf ? 0.0f : row_max;
    float row_sum = 0.0f;
    float acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarpsN; ++w) {
      const float weight = exp2f(merge_ml[(w * kRows + r) * 2] - ref);
      row_sum += weight * merge_ml[(w * kRows + r) * 2 + 1];
      acc += weight * merge_o[(w * kRows + r) * kHeadDim + d];
    }
    const int token = q_begin + row / group;
    const int head = kv_head * group + row % group;
    if (direct) {
      p.out[(static_cast<int64_t>(token) * p.num_heads + head) * kHeadDim + d] = acc / row_sum;
    } else {
      const int partial_row = kKind == Kind::kDecode ? seq : token;
      const int64_t entry =
          (static_cast<int64_t>(partial_row) * p.num_heads + head) * p.num_partitions + part;
      p.partial_acc[entry * kHeadDim + d] = acc;
      if (d == 0) {
        p.partial_ml[entry * 2] = row_max;
        p.partial_ml[entry * 2 + 1] = row_sum;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Host side.

template <int kHeadDim, int kWarpsM, int kWarpsN, int kStages, Kind kKind>
void LaunchMma(const PagedAttentionArgs& args, AttentionParams params, int64_t partial_rows,
               int64_t workspace_entries, cudaStream_t stream) {
  using Config = MmaConfig<kHeadDim, kWarpsM, kWarpsN, kStages, kKind>;
  const int64_t query_len = kKind == Kind::kDecode ? 1 : args.max_query_len;
  const int64_t row_tiles = CeilDiv(query_len * params.group_size, Config::kRows);
  ChoosePartitions(partial_rows, args.num_heads, args.max_seq_len, workspace_entries, params);
  const int64_t grid_x = row_tiles * params.num_partitions;
  CHECK_LE(grid_x, int64_t{0x7fffffff});
  auto kernel = AttentionMmaKernel<kHeadDim, kWarpsM, kWarpsN, kStages, kKind>;
  // Once per kernel: the limit sticks, and a decode step captured into a CUDA graph then
  // issues nothing but launches.
  static std::once_flag raised;
  std::call_once(raised, [&] {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Config::kSmemBytes));
  });
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(params.num_kv_heads),
                  static_cast<unsigned>(args.num_seqs));
  kernel<<<grid, Config::kThreads, Config::kSmemBytes, stream>>>(params);
  CUDA_CHECK_LAUNCH();
  if (params.num_partitions > 1) {
    const dim3 reduce_grid(static_cast<unsigned>(query_len), static_cast<unsigned>(args.num_heads),
                           static_cast<unsigned>(args.num_seqs));
    LaunchReducePartitions(kKind, params, reduce_grid, stream);
  }
}

template <int kHeadDim>
void LaunchMmaPair(const PagedAttentionArgs& args, const AttentionParams& params,
                   cudaStream_t stream) {
  const int64_t entries = WorkspaceEntries(args, kHeadDim);
  // Decode partials are indexed by sequence, prefill partials by query row.
  LaunchMma<kHeadDim, 1, 4, 3, Kind::kDecode>(args, params, args.num_seqs, entries, stream);
  if (args.max_query_len > 1) {
    LaunchMma<kHeadDim, 4, 1, 2, Kind::kPrefill>(args, params, args.num_tokens, entries, stream);
  }
}

}  // namespace

void LaunchAttentionMma(const PagedAttentionArgs& args, const AttentionParams& params,
                        cudaStream_t stream) {
  if (params.head_dim == 64) {
    LaunchMmaPair<64>(args, params, stream);
  } else {
    CHECK_EQ(params.head_dim, 128) << "the tensor-core attention takes head_dim 64 or 128";
    LaunchMmaPair<128>(args, params, stream);
  }
}

}  // namespace iquest::cuda::attention
