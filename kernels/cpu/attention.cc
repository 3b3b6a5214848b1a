#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {
namespace {

// The context slot of logical token `pos` of a sequence, through its block table row.
int64_t SlotOf(const int32_t* block_table, int64_t max_blocks, int64_t pos, const PagedKvView& kv) {
  const int64_t logical_block = pos / kv.block_size;
  CHECK_LT(logical_block, max_blocks);
  const int32_t physical = block_table[logical_block];
  CHECK(physical >= 0 && physical < kv.num_blocks) << "block " << physical;
  return physical * kv.block_size + pos % kv.block_size;
}

// One query head over context positions [first_pos, last_pos]:
// out = softmax(scale * q.K^T) V. scores[i] belongs to position first_pos + i.
void AttendOne(const float* q, const PagedKvView& kv, int64_t kv_head, const int32_t* block_table,
               int64_t max_blocks, int64_t first_pos, int64_t last_pos, float scale,
               std::vector<float>& scores, float* out) {
  const int64_t num_keys = last_pos - first_pos + 1;
  scores.resize(static_cast<size_t>(num_keys));
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < num_keys; ++i) {
    const int64_t pos = first_pos + i;
    const int64_t slot = SlotOf(block_table, max_blocks, pos, kv);
    float dot = 0.0f;
    for (int64_t d = 0; d < kv.head_dim; ++d) {
      dot += q[d] * LoadAsFloat(kv.k, kv.dtype, KvOffset(kv, slot, kv_head, d));
    }
    scores[i] = dot * scale;
    max_score = std::max(max_score, scores[i]);
  }
  float denominator = 0.0f;
  for (int64_t i = 0; i < num_keys; ++i) {
    scores[i] = std::exp(scores[i] - max_score);
    denominator += scores[i];
  }
  for (int64_t d = 0; d < kv.head_dim; ++d) out[d] = 0.0f;
  for (int64_t i = 0; i < num_keys; ++i) {
    const int64_t slot = SlotOf(block_table, max_blocks, first_pos + i, kv);
    const float weight = scores[i] / denominator;
    for (int64_t d = 0; d < kv.head_dim; ++d) {
      out[d] += weight * LoadAsFloat(kv.v, kv.dtype, KvOffset(kv, slot, kv_head, d));
    }
  }
}

}  // namespace

void CheckAttentionArgs(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                        TensorView out) {
  const int64_t num_tokens = q.dim(0);
  const int64_t num_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  const int64_t num_seqs = args.seq_lens.dim(0);
  const int64_t max_blocks = args.block_tables.dim(1);
  CHECK_EQ(head_dim, kv.head_dim);
  CHECK_EQ(num_heads % kv.num_kv_heads, 0);
  CHECK(out.ShapeIs({num_tokens, num_heads, head_dim})) << out.ShapeString();
  CHECK(args.query_start_loc.ShapeIs({num_seqs + 1})) << args.query_start_loc.ShapeString();
  CHECK_EQ(args.block_tables.dim(0), num_seqs);
  const int32_t* query_start = args.query_start_loc.as<int32_t>();
  const int32_t* seq_lens = args.seq_lens.as<int32_t>();
  CHECK_EQ(query_start[0], 0);
  CHECK_EQ(query_start[num_seqs], num_tokens);
  CHECK_GE(args.window, 0);
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t num_queries = query_start[s + 1] - query_start[s];
    CHECK(num_queries >= 0 && num_queries <= seq_lens[s]) << "sequence " << s;
    CHECK_LE(seq_lens[s], max_blocks * kv.block_size);
  }
}

void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                    TensorView out) {
  CheckAttentionArgs(q, kv, args, out);
  const int64_t num_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  const int64_t num_seqs = args.seq_lens.dim(0);
  const int64_t max_blocks = args.block_tables.dim(1);
  const int32_t* query_start = args.query_start_loc.as<int32_t>();
  const int32_t* seq_lens = args.seq_lens.as<int32_t>();
  const int32_t* block_tables = args.block_tables.as<int32_t>();
  const int64_t group_size = num_heads / kv.num_kv_heads;
  std::vector<float> scores;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t num_queries = query_start[s + 1] - query_start[s];
    const int32_t* block_table = block_tables + s * max_blocks;
    for (int64_t i = 0; i < num_queries; ++i) {
      const int64_t row = query_start[s] + i;
      const int64_t last_pos = seq_lens[s] - num_queries + i;  // Causal: keys ..last_pos.
      const int64_t first_pos = WindowStart(args, last_pos);
      for (int64_t h = 0; h < num_heads; ++h) {
        AttendOne(q.as<float>() + (row * num_heads + h) * head_dim, kv, h / group_size, block_table,
                  max_blocks, first_pos, last_pos, args.scale, scores,
                  out.as<float>() + (row * num_heads + h) * head_dim);
      }
    }
  }
}

}  // namespace iquest::cpu
