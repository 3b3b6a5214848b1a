// Flash-decoding's bookkeeping: how a launch's contexts are cut into partitions, the workspace
// their partial results need, and the kernel that merges the partials of each output row.
#include <algorithm>

#include "kernels/cuda/attention_params.cuh"
#include "kernels/cuda/cuda_check.h"

namespace iquest::cuda {
namespace attention {
namespace {

constexpr int kPartitionTokens = 512;    // Target partition length of a split context.
constexpr int64_t kMaxPartials = 32768;  // (row, head, partition) entries in the workspace.

// Merges the partitions of every (query row, head) of the sequences a split launch covered.
// Grid (max_query_len, num_heads, num_seqs), block head_dim threads (thread = output dim). The
// (max, sum) pairs come through shared memory a block's worth of partitions at a time and are
// merged online, so each partial accumulator is read once (coalesced over the dims).
constexpr int kMaxReduceThreads = 256;

template <Kind kKind>
__global__ void __launch_bounds__(kMaxReduceThreads)
    ReducePartitionsKernel(const AttentionParams p) {
  __shared__ float2 chunk_ml[kMaxReduceThreads];
  const int seq = static_cast<int>(blockIdx.z);
  const int head = static_cast<int>(blockIdx.y);
  const int q_begin = p.query_start_loc[seq];
  const int num_queries = p.query_start_loc[seq + 1] - q_begin;
  if (!Covers<kKind>(num_queries)) return;
  const int i = static_cast<int>(blockIdx.x);
  if (i >= num_queries) return;
  const int seq_len = p.seq_lens[seq];
  if (seq_len <= p.partition_tokens) return;  // Written directly.
  const int token = q_begin + i;
  const int pos = seq_len - num_queries + i;
  // Partitions holding at least one of this row's keys (the others did not write it): from the
  // one holding its window start to the one holding its own position.
  const int first_part = WindowStart(p, pos) / p.partition_tokens;
  const int row_parts = min(pos / p.partition_tokens + 1, p.num_partitions);
  const int partial_row = kKind == Kind::kDecode ? seq : token;
  const int64_t entry0 =
      (static_cast<int64_t>(partial_row) * p.num_heads + head) * p.num_partitions;
  const int d = static_cast<int>(threadIdx.x);
  const int threads = static_cast<int>(blockDim.x);
  float run_max = kNegInf;
  float run_sum = 0.0f;
  float run_acc = 0.0f;
  for (int part0 = first_part; part0 < row_parts; part0 += threads) {
    const int count = min(threads, row_parts - part0);
    __syncthreads();  // The previous chunk has been read.
    if (d < count) {
      chunk_ml[d] = reinterpret_cast<const float2*>(p.partial_ml)[entry0 + part0 + d];
    }
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < count; ++j) {
      const float2 ml = chunk_ml[j];
      const float acc = p.partial_acc[(entry0 + part0 + j) * p.head_dim + d];
      const float new_max = fmaxf(run_max, ml.x);
      const float ref = new_max == kNegInf ? 0.0f : new_max;
      const float old_weight = exp2f(run_max - ref);
      const float weight = exp2f(ml.x - ref);
      run_sum = run_sum * old_weight + ml.y * weight;
      run_acc = run_acc * old_weight + acc * weight;
      run_max = new_max;
    }
  }
  p.out[(static_cast<int64_t>(token) * p.num_heads + head) * p.head_dim + d] = run_acc / run_sum;
}

}  // namespace

void LaunchReducePartitions(Kind kind, const AttentionParams& params, dim3 grid,
                            cudaStream_t stream) {
  switch (kind) {
    case Kind::kDecode:
      ReducePartitionsKernel<Kind::kDecode><<<grid, params.head_dim, 0, stream>>>(params);
      break;
    case Kind::kPrefill:
      ReducePartitionsKernel<Kind::kPrefill><<<grid, params.head_dim, 0, stream>>>(params);
      break;
    case Kind::kAll:
      CHECK(false) << "only decode and prefill launches split";
  }
  CUDA_CHECK_LAUNCH();
}

// Entries ((row, head, partition) partials) the workspace holds.
int64_t WorkspaceEntries(const PagedAttentionArgs& args, int64_t head_dim) {
  if (args.workspace == nullptr) return 0;
  return static_cast<int64_t>(args.workspace_bytes / (static_cast<size_t>(head_dim + 2) * 4));
}

// Splits the context of a launch whose partials are indexed by `partial_rows` rows into
// partitions: as many 512-token partitions as the context needs, fewer (longer) when the
// workspace is short; 1 (no split, partition_tokens effectively infinite) when splitting would
// not help or does not fit.
void ChoosePartitions(int64_t partial_rows, int64_t num_heads, int64_t max_seq_len,
                      int64_t workspace_entries, AttentionParams& params) {
  params.num_partitions = 1;
  params.partition_tokens = 1 << 30;
  const int64_t wanted = CeilDiv(max_seq_len, kPartitionTokens);
  const int64_t room = workspace_entries / std::max<int64_t>(1, partial_rows * num_heads);
  int64_t partitions = std::min({wanted, room, int64_t{65535}});
  if (partitions < 2) return;
  const int64_t tokens = CeilDiv(CeilDiv(max_seq_len, partitions), kTileKeys) * kTileKeys;
  params.partition_tokens = static_cast<int>(tokens);
  params.num_partitions = static_cast<int>(CeilDiv(max_seq_len, tokens));
  if (params.num_partitions < 2) {
    params.num_partitions = 1;
    params.partition_tokens = 1 << 30;
  }
}

}  // namespace attention

size_t PagedAttentionWorkspaceBytes(int64_t max_num_tokens, int64_t num_heads, int64_t head_dim,
                                    int64_t max_seq_len) {
  using attention::CeilDiv;
  using attention::kMaxPartials;
  using attention::kPartitionTokens;
  const int64_t partitions = CeilDiv(max_seq_len, kPartitionTokens);
  if (partitions < 2 || max_num_tokens <= 0 || num_heads <= 0) return 0;
  // Room for every row of the largest batch split into 512-token partitions, capped at
  // kMaxPartials entries (but always at least two partitions of one row of every head).
  const int64_t entries =
      std::max(std::min(max_num_tokens * num_heads * partitions, kMaxPartials), 2 * num_heads);
  return static_cast<size_t>(entries) * static_cast<size_t>(head_dim + 2) * sizeof(float);
}

}  // namespace iquest::cuda
