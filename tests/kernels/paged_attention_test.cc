// WriteKv + PagedAttention against a float64 dense causal attention computed from the same K/V
// before paging. Covers block sizes 1/4/16 with blocks scattered through the pool, sequence
// lengths at block boundaries +-1 and of length 1, GQA ratios 1/4/8, head_dim 64 and 128, and a
// flat batch that mixes decodes and prefill chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/random_tensor.h"

namespace iquest {
namespace {

using testing::MaxRelativeError;
using testing::RandomFloats;

struct SeqSpec {
  int seq_len;      // Context after this step.
  int num_queries;  // This step's new tokens: the last num_queries of the context.
};

// Dense float64 causal attention of one sequence; q: [nq, heads, D], k/v: [seq_len, kv_heads, D].
// window > 0: query at position p sees keys max(0, p - window + 1) .. p.
std::vector<double> DenseAttention(const float* q, const float* k, const float* v, SeqSpec s,
                                   int heads, int kv_heads, int head_dim, int window) {
  std::vector<double> out(static_cast<size_t>(s.num_queries) * heads * head_dim, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  for (int i = 0; i < s.num_queries; ++i) {
    const int last = s.seq_len - s.num_queries + i;
    for (int h = 0; h < heads; ++h) {
      const int kvh = h / (heads / kv_heads);
      const int first = window > 0 ? std::max(0, last - window + 1) : 0;
      std::vector<double> scores(last + 1, 0.0);
      double max_score = -INFINITY;
      for (int j = first; j <= last; ++j) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) {
          dot += static_cast<double>(q[(i * heads + h) * head_dim + d]) *
                 k[(j * kv_heads + kvh) * head_dim + d];
        }
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      double total = 0;
      for (int j = first; j <= last; ++j) total += (scores[j] = std::exp(scores[j] - max_score));
      for (int j = first; j <= last; ++j) {
        for (int d = 0; d < head_dim; ++d) {
          out[(i * heads + h) * head_dim + d] +=
              scores[j] / total * v[(j * kv_heads + kvh) * head_dim + d];
        }
      }
    }
  }
  return out;
}

// (block_size, heads, kv_heads, head_dim)
class PagedAttentionTest : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(PagedAttentionTest, MatchesDenseFloat64Reference) {
  const auto [block_size, heads, kv_heads, head_dim] = GetParam();
  // Decodes (1 query) and prefill chunks, at block boundaries +-1, and a 1-token sequence.
  const std::vector<SeqSpec> seqs = {{1, 1},
                                     {block_size - 1 > 0 ? block_size - 1 : 2, 1},
                                     {block_size, block_size},
                                     {block_size + 1, 1},
                                     {2 * block_size + 1, 3},
                                     {37, 5}};
  // Blocks of all sequences shuffled through a pool twice as big as needed.
  std::vector<int> blocks_needed;
  int total_blocks = 0;
  for (const SeqSpec& s : seqs) {
    blocks_needed.push_back((s.seq_len + block_size - 1) / block_size);
    total_blocks += blocks_needed.back();
  }
  const int num_blocks = 2 * total_blocks;
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(123));
  const int max_blocks = *std::max_element(blocks_needed.begin(), blocks_needed.end());
  std::vector<int32_t> block_tables(seqs.size() * max_blocks, 0);
  int next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int b = 0; b < blocks_needed[s]; ++b) block_tables[s * max_blocks + b] = pool[next++];
  }

  const int kv_width = kv_heads * head_dim;
  std::vector<float> kv_cache_k(static_cast<size_t>(num_blocks) * block_size * kv_width, NAN);
  std::vector<float> kv_cache_v(kv_cache_k.size(), NAN);
  PagedKvView kv{kv_cache_k.data(), kv_cache_v.data(), DType::kF32, num_blocks,
                 block_size,        kv_heads,          head_dim};
  CpuBackend backend;
  std::vector<std::vector<float>> keys, values;
  std::vector<float> q_all;
  std::vector<int32_t> query_start = {0}, seq_lens;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqSpec spec = seqs[s];
    keys.push_back(RandomFloats(spec.seq_len * kv_width, 100 + s));
    values.push_back(RandomFloats(spec.seq_len * kv_width, 200 + s));
    std::vector<int32_t> slots(spec.seq_len);
    for (int p = 0; p < spec.seq_len; ++p) {
      slots[p] = block_tables[s * max_blocks + p / block_size] * block_size + p % block_size;
    }
    backend.WriteKv(TensorView(keys[s].data(), DType::kF32, {spec.seq_len, kv_heads, head_dim}),
                    TensorView(values[s].data(), DType::kF32, {spec.seq_len, kv_heads, head_dim}),
                    TensorView(slots.data(), DType::kI32, {spec.seq_len}), kv);
    const std::vector<float> q = RandomFloats(spec.num_queries * heads * head_dim, 300 + s);
    q_all.insert(q_all.end(), q.begin(), q.end());
    query_start.push_back(query_start.back() + spec.num_queries);
    seq_lens.push_back(spec.seq_len);
  }
  const int num_tokens = query_start.back();
  const int num_seqs = static_cast<int>(seqs.size());
  AttentionArgs args;
  args.query_start_loc = TensorView(query_start.data(), DType::kI32, {num_seqs + 1});
  args.seq_lens = TensorView(seq_lens.data(), DType::kI32, {num_seqs});
  args.block_tables = TensorView(block_tables.data(), DType::kI32, {num_seqs, max_blocks});
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  // Full causal, then sliding windows (Mistral's, the Loop model's local branch) shorter than a
  // block, than the longest chunk and than the contexts.
  for (const int window : {0, 1, 3, 7}) {
    args.window = window;
    std::vector<float> out(static_cast<size_t>(num_tokens) * heads * head_dim, NAN);
    backend.PagedAttention(TensorView(q_all.data(), DType::kF32, {num_tokens, heads, head_dim}), kv,
                           args,
                           TensorView(out.data(), DType::kF32, {num_tokens, heads, head_dim}));
    for (int s = 0; s < num_seqs; ++s) {
      const size_t row_elems = static_cast<size_t>(heads) * head_dim;
      const float* q_seq = q_all.data() + query_start[s] * row_elems;
      const std::vector<double> expected = DenseAttention(
          q_seq, keys[s].data(), values[s].data(), seqs[s], heads, kv_heads, head_dim, window);
      const std::vector<float> actual(out.begin() + query_start[s] * row_elems,
                                      out.begin() + query_start[s + 1] * row_elems);
      EXPECT_LE(MaxRelativeError(actual, expected), 1e-5)
          << "sequence " << s << " seq_len " << seqs[s].seq_len << " window " << window;
    }
  }
}

// The Loop model's gate mix against float64: g = sigmoid(q . w[h] + b[h]) per (token, head),
// out = g * global + (1 - g) * local, for f32 and bf16 gate weights; out aliasing global.
TEST(GatedAttentionMixTest, MatchesFloat64Reference) {
  const int t = 5, heads = 3, head_dim = 24;
  const int n = t * heads * head_dim;
  const std::vector<float> q = RandomFloats(n, 1), global = RandomFloats(n, 2),
                           local = RandomFloats(n, 3);
  std::vector<float> weight = RandomFloats(heads * head_dim, 4);
  const std::vector<float> bias = {-2.0f, 0.0f, 3.0f};
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    std::vector<uint16_t> weight_bf16(weight.size());
    for (size_t i = 0; i < weight.size(); ++i) weight_bf16[i] = FloatToBf16(weight[i]);
    const TensorView w = dtype == DType::kF32
                             ? TensorView(weight.data(), DType::kF32, {heads, head_dim})
                             : TensorView(weight_bf16.data(), DType::kBF16, {heads, head_dim});
    std::vector<float> out = global;  // Aliases global, as the model calls it.
    CpuBackend().GatedAttentionMix(
        TensorView(const_cast<float*>(q.data()), DType::kF32, {t, heads, head_dim}), w,
        TensorView(const_cast<float*>(bias.data()), DType::kF32, {heads}),
        TensorView(out.data(), DType::kF32, {t, heads, head_dim}),
        TensorView(const_cast<float*>(local.data()), DType::kF32, {t, heads, head_dim}),
        TensorView(out.data(), DType::kF32, {t, heads, head_dim}));
    std::vector<double> expected(n);
    for (int i = 0; i < t; ++i) {
      for (int h = 0; h < heads; ++h) {
        double logit = bias[h];
        for (int d = 0; d < head_dim; ++d) {
          const double wd = dtype == DType::kF32 ? weight[h * head_dim + d]
                                                 : Bf16ToFloat(weight_bf16[h * head_dim + d]);
          logit += static_cast<double>(q[(i * heads + h) * head_dim + d]) * wd;
        }
        const double g = 1.0 / (1.0 + std::exp(-logit));
        for (int d = 0; d < head_dim; ++d) {
          const int e = (i * heads + h) * head_dim + d;
          expected[e] = g * global[e] + (1.0 - g) * local[e];
        }
      }
    }
    EXPECT_LE(MaxRelativeError(out, expected), 1e-6) << DTypeName(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionTest,
                         ::testing::Values(std::make_tuple(16, 8, 8, 64),     // GQA ratio 1
                                           std::make_tuple(16, 8, 2, 128),    // ratio 4
                                           std::make_tuple(4, 8, 1, 64),      // ratio 8
                                           std::make_tuple(1, 4, 1, 128),     // block_size 1
                                           std::make_tuple(4, 16, 2, 128)));  // ratio 8

TEST(WriteKvTest, StoresBf16KvWithRounding) {
  const int block_size = 4, kv_heads = 2, head_dim = 8, num_blocks = 3;
  std::vector<float> k = RandomFloats(kv_heads * head_dim, 1),
                     v = RandomFloats(kv_heads * head_dim, 2);
  std::vector<uint16_t> k_cache(num_blocks * block_size * kv_heads * head_dim, 0);
  std::vector<uint16_t> v_cache(k_cache.size(), 0);
  PagedKvView kv{k_cache.data(), v_cache.data(), DType::kBF16, num_blocks,
                 block_size,     kv_heads,       head_dim};
  std::vector<int32_t> slot = {2 * block_size + 3};  // Last token of block 2.
  CpuBackend backend;
  backend.WriteKv(TensorView(k.data(), DType::kF32, {1, kv_heads, head_dim}),
                  TensorView(v.data(), DType::kF32, {1, kv_heads, head_dim}),
                  TensorView(slot.data(), DType::kI32, {1}), kv);
  for (int h = 0; h < kv_heads; ++h) {
    for (int d = 0; d < head_dim; ++d) {
      // Head-major block layout: [block][kv_head][slot_in_block][head_dim].
      const size_t offset = ((2 * kv_heads + h) * block_size + 3) * head_dim + d;
      EXPECT_EQ(k_cache[offset], FloatToBf16(k[h * head_dim + d]));
      EXPECT_EQ(v_cache[offset], FloatToBf16(v[h * head_dim + d]));
    }
  }
}

TEST(CopyKvBlocksTest, CopiesWholeBlocksInBothPools) {
  const int block_size = 4, kv_heads = 2, head_dim = 8, num_blocks = 5;
  const size_t block_elems = block_size * kv_heads * head_dim;
  std::vector<float> k = RandomFloats(num_blocks * block_elems, 3);
  std::vector<float> v = RandomFloats(num_blocks * block_elems, 4);
  const std::vector<float> k0 = k, v0 = v;
  PagedKvView kv{k.data(), v.data(), DType::kF32, num_blocks, block_size, kv_heads, head_dim};
  std::vector<int32_t> pairs = {1, 3, 4, 0};  // 1 -> 3 and 4 -> 0.
  CpuBackend backend;
  backend.CopyKvBlocks(TensorView(pairs.data(), DType::kI32, {2, 2}), kv);
  for (size_t i = 0; i < block_elems; ++i) {
    EXPECT_EQ(k[3 * block_elems + i], k0[1 * block_elems + i]);
    EXPECT_EQ(v[3 * block_elems + i], v0[1 * block_elems + i]);
    EXPECT_EQ(k[0 * block_elems + i], k0[4 * block_elems + i]);
    EXPECT_EQ(k[2 * block_elems + i], k0[2 * block_elems + i]);  // Untouched.
  }
}

}  // namespace
}  // namespace iquest
