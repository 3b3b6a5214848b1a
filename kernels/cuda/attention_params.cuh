// What the paged-attention kernels share (attention.cu: the dispatch; attention_mma.cu: the
// tensor-core kernels; attention_partitions.cu: flash-decoding's split and merge;
// attention_simt.cu: the f32 fallback): the launch parameters, which sequences a launch covers,
// and the launchers each file offers the others.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "common/dtype.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda::attention {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Everything a kernel needs; passed by value.
struct AttentionParams {
  const float* q = nullptr;                  // [num_tokens, num_heads, head_dim] f32
  float* out = nullptr;                      // [num_tokens, num_heads, head_dim] f32
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;         // [num_seqs]
  const int32_t* block_tables = nullptr;     // [num_seqs, max_blocks_per_seq]
  const void* k_cache = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim] kv dtype
  const void* v_cache = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim] kv dtype
  // Partials, entry e = (partial_row * num_heads + head) * num_partitions + partition, where
  // partial_row is the sequence (decode launch) or the query row (prefill launch).
  float* partial_ml = nullptr;   // [entries, 2] f32: running max (log2 units), sum of exp2
  float* partial_acc = nullptr;  // [entries, head_dim] f32: unnormalised sum of p * v
  int num_heads = 0;
  int num_kv_heads = 0;
  int group_size = 0;  // num_heads / num_kv_heads
  int head_dim = 0;
  int block_size = 0;   // Tokens per cache block.
  int block_shift = 0;  // log2(block_size) when it is a power of two.
  int max_blocks_per_seq = 0;
  int num_partitions = 1;          // Partitions of this launch (1: no split).
  int partition_tokens = 1 << 30;  // Tokens per partition.
  float scale_log2 = 0.0f;         // softmax scale * log2(e)
  int window = 0;                  // Sliding window in tokens; 0 = full causal.
};

// Which sequences a launch covers.
enum class Kind { kDecode, kPrefill, kAll };

template <Kind kKind>
__device__ __forceinline__ bool Covers(int num_queries) {
  if (kKind == Kind::kDecode) return num_queries == 1;
  if (kKind == Kind::kPrefill) return num_queries > 1;
  return num_queries > 0;
}

// The first key position a query at `pos` sees.
__device__ __forceinline__ int WindowStart(const AttentionParams& p, int pos) {
  return p.window > 0 ? max(0, pos - p.window + 1) : 0;
}

inline constexpr int kTileKeys = 64;  // Keys per K/V tile of the tensor-core kernel.

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Flash-decoding (attention_partitions.cu). Entries ((row, head, partition) partials) the
// workspace of `args` holds.
int64_t WorkspaceEntries(const PagedAttentionArgs& args, int64_t head_dim);
// Cuts a launch's contexts into partitions (params.num_partitions, params.partition_tokens):
// ~512 tokens each, fewer and longer when the workspace is short, 1 when splitting would not
// help or fit. `partial_rows`: the rows its partials are indexed by (sequences or query rows).
void ChoosePartitions(int64_t partial_rows, int64_t num_heads, int64_t max_seq_len,
                      int64_t workspace_entries, AttentionParams& params);
// Merges the partials of every (query row, head) of the sequences a split launch of `kind`
// covered into params.out. grid: (max query length, num_heads, num_seqs).
void LaunchReducePartitions(Kind kind, const AttentionParams& params, dim3 grid,
                            cudaStream_t stream);

// The tensor-core kernels (attention_mma.cu): bf16 cache, params.head_dim 64 or 128,
// power-of-two blocks (params.block_shift set), 16-byte aligned q. Launches the decode
// configuration, then the prefill one when args.max_query_len > 1, each with its merge.
void LaunchAttentionMma(const PagedAttentionArgs& args, const AttentionParams& params,
                        cudaStream_t stream);

// The SIMT fallback (attention_simt.cu) for caches of `kv_dtype` (bf16, f16 or f32), any
// head_dim <= 256 and any block size: one warp per (query row, head), all in f32. Slow.
void LaunchAttentionSimt(const PagedAttentionArgs& args, const AttentionParams& params,
                         DType kv_dtype, cudaStream_t stream);

}  // namespace iquest::cuda::attention
