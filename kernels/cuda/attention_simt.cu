// The paged-attention fallback: f32 / f16 caches, head dims other than 64 and 128 (up to 256),
// unaligned q, or block sizes that are not powers of two. One warp per (query row, head), lanes
// own head dims, keys four at a time with an online softmax, all in f32 (gpu-check holds the
// f32-cache case to 1e-4 of float64). Slow; correctness for the shapes the tensor-core kernels
// (attention.cu) do not take.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/attention_params.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda::attention {
namespace {

// ------------------------------------------------------------------------------------------
// SIMT fallback. Grid (max_query_len, ceil(num_heads / kSimtWarps), num_seqs), block
// 32 * kSimtWarps; one warp per (query row, head); lane owns dims lane + 32 j.
constexpr int kSimtWarps = 4;
constexpr int kSimtKeys = 4;  // Keys per step (independent dot products in flight).

template <typename T, int kDimsPerLane>
__global__ void __launch_bounds__(32 * kSimtWarps) AttentionSimtKernel(const AttentionParams p) {
  const int seq = static_cast<int>(blockIdx.z);
  const int q_begin = p.query_start_loc[seq];
  const int num_queries = p.query_start_loc[seq + 1] - q_begin;
  const int i = static_cast<int>(blockIdx.x);
  if (i >= num_queries) return;
  const int head = static_cast<int>(blockIdx.y) * kSimtWarps + static_cast<int>(threadIdx.x) / 32;
  if (head >= p.num_heads) return;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int kv_head = head / p.group_size;
  const int seq_len = p.seq_lens[seq];
  const int last_pos = seq_len - num_queries + i;
  const int token = q_begin + i;
  const int head_dim = p.head_dim;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);

  float q[kDimsPerLane];
  float acc[kDimsPerLane];
  const float* q_row = p.q + (static_cast<int64_t>(token) * p.num_heads + head) * head_dim;
#pragma unroll
  for (int j = 0; j < kDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    q[j] = d < head_dim ? q_row[d] * p.scale_log2 : 0.0f;
    acc[j] = 0.0f;
  }
  float row_max = kNegInf;
  float row_sum = 0.0f;
  for (int key0 = WindowStart(p, last_pos); key0 <= last_pos; key0 += kSimtKeys) {
    int64_t base[kSimtKeys];
    float score[kSimtKeys];
#pragma unroll
    for (int u = 0; u < kSimtKeys; ++u) {
      const int pos = min(key0 + u, last_pos);  // Clamped keys are masked below.
      const int64_t block = block_table[pos / p.block_size];
      base[u] = ((block * p.num_kv_heads + kv_head) * p.block_size + pos % p.block_size) * head_dim;
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < head_dim) dot += q[j] * ToFloat(k_cache[base[u] + d]);
      }
      score[u] = dot;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
#pragma unroll
      for (int u = 0; u < kSimtKeys; ++u) {
        score[u] += __shfl_xor_sync(0xffffffffu, score[u], offset);
      }
    }
    float new_max = row_max;
#pragma unroll
    for (int u = 0; u < kSimtKeys; ++u) {
      if (key0 + u > last_pos) score[u] = kNegInf;
      new_max = fmaxf(new_max, score[u]);
    }
    const float alpha = exp2f(row_max - new_max);  // Key key0 is always valid: finite max.
    row_max = new_max;
    row_sum *= alpha;
#pragma unroll
    for (int j = 0; j < kDimsPerLane; ++j) acc[j] *= alpha;
#pragma unroll
    for (int u = 0; u < kSimtKeys; ++u) {
      const float weight = exp2f(score[u] - new_max);
      row_sum += weight;
#pragma unroll
      for (int j = 0; j < kDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < head_dim) acc[j] += weight * ToFloat(v_cache[base[u] + d]);
      }
    }
  }
  float* out_row = p.out + (static_cast<int64_t>(token) * p.num_heads + head) * head_dim;
#pragma unroll
  for (int j = 0; j < kDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < head_dim) out_row[d] = acc[j] / row_sum;
  }
}

template <typename T>
void LaunchSimt(const PagedAttentionArgs& args, const AttentionParams& params,
                cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(args.max_query_len),
                  static_cast<unsigned>(CeilDiv(args.num_heads, kSimtWarps)),
                  static_cast<unsigned>(args.num_seqs));
  const int threads = 32 * kSimtWarps;
  if (params.head_dim <= 64) {
    AttentionSimtKernel<T, 2><<<grid, threads, 0, stream>>>(params);
  } else if (params.head_dim <= 128) {
    AttentionSimtKernel<T, 4><<<grid, threads, 0, stream>>>(params);
  } else {
    AttentionSimtKernel<T, 8><<<grid, threads, 0, stream>>>(params);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void LaunchAttentionSimt(const PagedAttentionArgs& args, const AttentionParams& params,
                         DType kv_dtype, cudaStream_t stream) {
  switch (kv_dtype) {
    case DType::kBF16:
      LaunchSimt<__nv_bfloat16>(args, params, stream);
      break;
    case DType::kF16:
      LaunchSimt<__half>(args, params, stream);
      break;
    default:
      LaunchSimt<float>(args, params, stream);
      break;
  }
}

}  // namespace iquest::cuda::attention
