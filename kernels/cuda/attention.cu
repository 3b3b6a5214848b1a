// Paged attention over a flat batch that mixes prefill chunks and decodes (cuda_ops.h).
//
// Design
// ------
// Rows. Inside one (sequence, KV head) pair the work is a set of "rows": row r is query token
// r / G of the sequence with query head kv_head * G + r % G (G = num_heads / num_kv_heads, the
// GQA group). All rows of a KV head share its keys, so one CTA computes a tile of rows against
// each K/V tile it loads: every K/V byte is read once per GQA group, not once per query head.
// The causal limit is per row: row r sees positions 0..seq_len - num_queries + r / G. With a
// sliding window W a row at position p sees max(0, p - W + 1)..p: a CTA starts its keys at the
// window start of its first row, masks per row, and skips partitions before every row's window
// (the reduction reads a row's partitions from the one holding its window start).
//
// Tensor-core kernel (AttentionMmaKernel in attention_mma.cu, bf16 cache, head_dim 64 or 128,
// power-of-two block size). Flash-attention-2 style: q is rounded to bf16 into shared memory once,
// K/V tiles of kTileKeys = 64 tokens stream through a cp.async ring (16-byte copies gathered
// through the block table, zero-filled past the end, XOR-swizzled so that ldmatrix is
// conflict-free), and each warp does S = Q K^T and O += P V with mma.sync m16n8k16 (bf16 in, f32
// accumulate) and an online softmax in registers (exp2 with scale * log2(e) folded in). Two
// configurations:
//   prefill: 4 warps x 16 rows = 64 rows per CTA, each warp sees all 64 keys of a tile,
//            2 stages (64 KB smem at head_dim 128). Grid (row tiles * partitions, kv heads, seqs).
//   decode:  1 warp-row of 16 rows (the G heads of the one query token, padded; more tiles when
//            G > 16), the 4 warps split each 64-key tile 16 keys apiece (flash-decoding inside
//            the CTA), 3 stages (96 KB smem, under the 99 KB of sm_86/89). Same grid.
// The q tile goes through the last pipeline stage (empty until the first refill), so shared
// memory is just the stages.
// At the end each warp leaves (max, sum, O) in shared memory and the CTA merges the warps.
//
// Partitions (flash-decoding). When the context is long a launch splits it into partitions of
// partition_tokens (ceil(max_seq_len / P) rounded up to kTileKeys, P = ceil(max_seq_len / 512)
// when the workspace has room: about kPartitionTokens = 512 tokens) so that a decode batch
// of a few sequences still fills the device: 8 sequences x 8 KV heads x 32k tokens make 4096
// CTAs instead of 64. Each CTA then writes unnormalised partials (max, sum, acc[head_dim], all
// f32) to the workspace and ReducePartitionsKernel merges the partitions of each output row.
// A sequence whose whole context fits one partition is written straight to `out`. The number
// of partitions is bounded by the workspace given (PagedAttentionWorkspaceBytes holds
// kMaxPartials (row, head, partition) entries at most): with less room, partitions get longer;
// with none, nothing splits. Workspace layout: (max, sum) [entries][2] f32, then the
// accumulators [entries][head_dim] f32; a decode launch indexes its rows by sequence, a prefill
// launch by query token.
//
// Mixed batches. PagedAttention launches the decode configuration (it skips sequences whose
// query length is not 1), then the prefill configuration (it skips query lengths 0 and 1), each
// followed by its reduction when it split; grids are sized by args.max_query_len and
// args.max_seq_len. The two share the workspace one after the other on the stream.
//
// Fallback (attention_simt.cu): f32 / f16 caches, other head dims (<= 256), unaligned q, or
// other block sizes.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.h"
#include "common/dtype.h"
#include "kernels/cuda/attention_params.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kv_layout.h"

namespace iquest::cuda {

using attention::AttentionParams;
using attention::kLog2e;
using attention::WorkspaceEntries;

void PagedAttention(const PagedAttentionArgs& args, const PagedKvView& kv, cudaStream_t stream) {
  if (args.num_seqs <= 0 || args.num_tokens <= 0 || args.max_query_len <= 0) return;
  CHECK_GT(kv.num_kv_heads, 0);
  CHECK_EQ(args.num_heads % kv.num_kv_heads, 0);
  CHECK(kv.head_dim > 0 && kv.head_dim <= 256) << "head_dim " << kv.head_dim;
  CHECK_GT(kv.block_size, 0);
  CHECK_LE(args.num_seqs, int64_t{65535});
  CHECK_LE(args.num_heads, int64_t{65535});
  CHECK_LE(args.max_query_len, int64_t{0x7fffffff});
  CHECK(kv.dtype == DType::kBF16 || kv.dtype == DType::kF16 || kv.dtype == DType::kF32)
      << DTypeName(kv.dtype);

  AttentionParams params;
  params.q = args.q;
  params.out = args.out;
  params.query_start_loc = args.query_start_loc;
  params.seq_lens = args.seq_lens;
  params.block_tables = args.block_tables;
  params.k_cache = kv.k;
  params.v_cache = kv.v;
  params.num_heads = static_cast<int>(args.num_heads);
  params.num_kv_heads = static_cast<int>(kv.num_kv_heads);
  params.group_size = static_cast<int>(args.num_heads / kv.num_kv_heads);
  params.head_dim = static_cast<int>(kv.head_dim);
  params.block_size = static_cast<int>(kv.block_size);
  params.max_blocks_per_seq = static_cast<int>(args.max_blocks_per_seq);
  params.scale_log2 = args.scale * kLog2e;
  CHECK_GE(args.window, 0);
  CHECK_LE(args.window, int64_t{0x7fffffff});
  params.window = static_cast<int>(args.window);
  // Partials: [entries, 2] (max, sum) first, then [entries, head_dim] accumulators.
  const int64_t entries = WorkspaceEntries(args, kv.head_dim);
  params.partial_ml = static_cast<float*>(args.workspace);
  params.partial_acc =
      args.workspace == nullptr ? nullptr : static_cast<float*>(args.workspace) + 2 * entries;

  const bool power_of_two_blocks = (kv.block_size & (kv.block_size - 1)) == 0;
  const bool q_aligned = reinterpret_cast<uintptr_t>(args.q) % 16 == 0;
  const bool tensor_cores = kv.dtype == DType::kBF16 && power_of_two_blocks && q_aligned &&
                            (kv.head_dim == 64 || kv.head_dim == 128);
  if (tensor_cores) {
    while ((1 << params.block_shift) < params.block_size) ++params.block_shift;
    attention::LaunchAttentionMma(args, params, stream);
    return;
  }
  attention::LaunchAttentionSimt(args, params, kv.dtype, stream);
}

}  // namespace iquest::cuda
