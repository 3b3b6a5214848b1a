// The fast CPU backend against the reference ops (kernels/cpu/*.cc), for every ISA this CPU
// has and 1 or 3 threads, on odd shapes (panel and K-block boundaries +-1). Outputs are poisoned
// with NaN before each run. Tolerances (normwise relative): 1e-5 where the fast path computes in
// f32; 1e-2 for the bf16-dot GEMM (activations rounded to bf16). And end to end: greedy output of
// tiny models is identical between the reference and every fast backend for 64 tokens.
#include "kernels/cpu/fast/fast_cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fast/thread_pool.h"
#include "kernels/quant/ggml_quant.h"
#include "model/llama.h"
#include "tests/testing/greedy.h"
#include "tests/testing/paged_batch.h"
#include "tests/testing/random_tensor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {

// Test names say "bf16", not "4-byte object <02-00 00-00>".
void PrintTo(DType dtype, std::ostream* os) { *os << DTypeName(dtype); }
void PrintTo(QuantType type, std::ostream* os) { *os << QuantTypeName(type); }

namespace {

using cpu::CpuIsa;
using cpu::FastCpuBackend;
using testing::Encode;
using testing::Greedy;
using testing::MaxRelativeError;
using testing::RandomFloats;

constexpr double kF32Tolerance = 1e-5;
constexpr double kBf16DotTolerance = 1e-2;

// The ISAs of this CPU, by name (avx2, avx512, avx512-bf16).
std::vector<std::string> AvailableIsas() {
  std::vector<std::string> names;
  for (const char* name : {"avx2", "avx512", "avx512-bf16"}) {
    if (cpu::ResolveCpuIsa(name).ok()) names.push_back(name);
  }
  return names;
}

std::unique_ptr<FastCpuBackend> MakeFast(const std::string& isa, int threads) {
  absl::StatusOr<CpuIsa> resolved = cpu::ResolveCpuIsa(isa);
  CHECK(resolved.ok()) << resolved.status();
  return std::make_unique<FastCpuBackend>(*resolved, threads);
}

TEST(ThreadPoolTest, CoversEveryTaskOnceWithContiguousRanges) {
  cpu::ThreadPool pool(3);
  for (int64_t n : {1, 2, 3, 4, 7, 100, 1001}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      ASSERT_LT(begin, end);
      for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
    });
    for (int h : hits) ASSERT_EQ(h, 1);
  }
  pool.ParallelFor(0, [&](int64_t, int64_t) { FAIL() << "no tasks, no calls"; });
}

TEST(ThreadPoolTest, GuidedChunksCoverEveryTaskOnceOnGranuleBoundaries) {
  cpu::ThreadPool pool(3);
  for (int64_t n : {1, 2, 3, 7, 100, 1001, 8016}) {
    for (int64_t granule : {1, 2, 16}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0};
      pool.ParallelForGuided(n, granule, [&](int64_t begin, int64_t end) {
        ASSERT_LT(begin, end);
        ASSERT_EQ(begin % granule, 0);
        ASSERT_TRUE(end % granule == 0 || end == n);
        ++calls;
        for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (const auto& h : hits) ASSERT_EQ(h.load(), 1) << "n=" << n << " granule=" << granule;
      // Chunks shrink geometrically: many granules take more than one chunk, never one each.
      const int64_t granules = (n + granule - 1) / granule;
      if (granules >= 64) {
        EXPECT_LT(calls.load(), granules / 2);
      }
    }
  }
  pool.ParallelForGuided(0, 2, [&](int64_t, int64_t) { FAIL() << "no tasks, no calls"; });
}

TEST(CpuIsaTest, UnknownAndUnsupportedNamesAreErrors) {
  EXPECT_EQ(cpu::ResolveCpuIsa("sse9").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(cpu::ResolveCpuIsa("auto").ok() || !cpu::ResolveCpuIsa("avx2").ok());
}

// (isa, threads, dtype, m, k); each test runs every n (panels of 16 +-1) with and without bias.
using GemmParam = std::tuple<std::string, int, DType, int, int>;
class FastGemmTest : public ::testing::TestWithParam<GemmParam> {};

void CheckGemm(const std::string& isa, int threads, DType dtype, int m, int k, int n,
               bool with_bias) {
  SCOPED_TRACE(::testing::Message() << "n=" << n << " bias=" << with_bias);
  const std::vector<float> a = RandomFloats(static_cast<size_t>(m) * k, 1);
  std::vector<uint8_t> w = Encode(RandomFloats(static_cast<size_t>(n) * k, 2), dtype);
  std::vector<uint8_t> bias = Encode(RandomFloats(n, 3), dtype);
  const TensorView a_view(const_cast<float*>(a.data()), DType::kF32, {m, k});
  const TensorView w_view(w.data(), dtype, {n, k});
  const TensorView bias_view = with_bias ? TensorView(bias.data(), dtype, {n}) : TensorView();
  std::vector<float> expected(static_cast<size_t>(m) * n, NAN);
  CpuBackend reference;
  reference.Gemm(a_view, w_view, bias_view, TensorView(expected.data(), DType::kF32, {m, n}));

  auto fast = MakeFast(isa, threads);
  fast->PrepareGemmWeight(w_view);
  std::vector<float> out(expected.size(), NAN);
  fast->Gemm(a_view, w_view, bias_view, TensorView(out.data(), DType::kF32, {m, n}));
  const bool dot_path = isa == "avx512-bf16" && dtype == DType::kBF16 && m >= cpu::kBf16DotMinRows;
  EXPECT_LE(MaxRelativeError(out, expected), dot_path ? kBf16DotTolerance : kF32Tolerance);

  // A second call reuses the packed weight; a changed weight at the same address is noticed.
  std::fill(out.begin(), out.end(), NAN);
  fast->Gemm(a_view, w_view, bias_view, TensorView(out.data(), DType::kF32, {m, n}));
  EXPECT_LE(MaxRelativeError(out, expected), dot_path ? kBf16DotTolerance : kF32Tolerance);
  const std::vector<uint8_t> changed = Encode(RandomFloats(static_cast<size_t>(n) * k, 4), dtype);
  std::copy(changed.begin(), changed.end(), w.begin());  // Same address, new contents.
  reference.Gemm(a_view, w_view, bias_view, TensorView(expected.data(), DType::kF32, {m, n}));
  fast->Gemm(a_view, w_view, bias_view, TensorView(out.data(), DType::kF32, {m, n}));
  EXPECT_LE(MaxRelativeError(out, expected), dot_path ? kBf16DotTolerance : kF32Tolerance);
}

TEST_P(FastGemmTest, MatchesReference) {
  const auto [isa, threads, dtype, m, k] = GetParam();
  for (int n : {1, 15, 17, 33, 100}) {
    for (bool with_bias : {false, true}) CheckGemm(isa, threads, dtype, m, k, n, with_bias);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FastGemmTest,
    ::testing::Combine(::testing::ValuesIn(AvailableIsas()), ::testing::Values(1, 3),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       // m: register blocks +-1; 70 takes the prefill loop order (> 64 rows).
                       ::testing::Values(1, 3, 8, 9, 17, 33, 70),
                       // k: crossings of the K slices (256 for batched decode, 1024 prefill).
                       ::testing::Values(2, 64, 1030, 2100)));

// Quantized weights (GGUF blocks, read in place): (isa, threads, type, m). The expected output
// is computed here in float64 from Dequantize's weights (the format's values), independently of
// both backends; the reference backend is held to it too.
using QuantGemmParam = std::tuple<std::string, int, QuantType, int>;
class FastQuantGemmTest : public ::testing::TestWithParam<QuantGemmParam> {};

TEST_P(FastQuantGemmTest, MatchesFloat64OnTheDequantizedWeights) {
  const auto [isa, threads, type, m] = GetParam();
  const int64_t qk = LayoutOf(type).block_elements;
  auto fast = MakeFast(isa, threads);
  CpuBackend reference;
  // k: one block, and several (K-quants: 3 super-blocks); n: the decode path's row tiles of 4
  // +-1 and the prefill path's panels of 16 +-1.
  for (const int64_t k : {qk, 3 * qk, qk == 32 ? int64_t{2080} : int64_t{2048}}) {
    for (const int64_t n : {1, 4, 5, 15, 17, 33, 100}) {
      SCOPED_TRACE(::testing::Message() << "k=" << k << " n=" << n);
      std::vector<uint8_t> w(DTypeBytes(DTypeOf(type), n * k));
      const std::vector<float> original = RandomFloats(static_cast<size_t>(n * k), 5);
      ASSERT_OK(Quantize(type, original.data(), n * k, w.data()));
      std::vector<float> dequantized(static_cast<size_t>(n * k));
      Dequantize(type, w.data(), n * k, dequantized.data());
      const std::vector<float> a = RandomFloats(static_cast<size_t>(m * k), 6);
      const std::vector<float> bias = RandomFloats(static_cast<size_t>(n), 7);
      std::vector<double> expected(static_cast<size_t>(m * n));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double sum = bias[j];
          for (int64_t l = 0; l < k; ++l) sum += double{a[i * k + l]} * dequantized[j * k + l];
          expected[i * n + j] = sum;
        }
      }
      const TensorView a_view(const_cast<float*>(a.data()), DType::kF32, {m, k});
      const TensorView w_view(w.data(), DTypeOf(type), {n, k});
      const TensorView bias_view(const_cast<float*>(bias.data()), DType::kF32, {n});
      for (Backend* backend :
           {static_cast<Backend*>(fast.get()), static_cast<Backend*>(&reference)}) {
        SCOPED_TRACE(backend->name());
        backend->PrepareGemmWeight(w_view);
        EXPECT_FALSE(backend->HoldsCopyOf(w_view));  // Read in place: the mapping stays.
        std::vector<float> out(static_cast<size_t>(m * n), NAN);
        backend->Gemm(a_view, w_view, bias_view, TensorView(out.data(), DType::kF32, {m, n}));
        EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FastQuantGemmTest,
    ::testing::Combine(::testing::ValuesIn(AvailableIsas()), ::testing::Values(1, 3),
                       ::testing::Values(QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ4_K,
                                         QuantType::kQ5_K, QuantType::kQ6_K),
                       // m: the decode path (<= 4 rows), then the panel path's register
                       // blocks +-1 and its prefill loop order (> 64 rows).
                       ::testing::Values(1, 3, 4, 5, 9, 70)));

TEST(FastQuantEmbedTest, RowsAreTheDequantizedRows) {
  constexpr int64_t kVocab = 7, kHidden = 512;
  for (QuantType type : {QuantType::kQ8_0, QuantType::kQ4_K, QuantType::kQ6_K}) {
    std::vector<uint8_t> table(DTypeBytes(DTypeOf(type), kVocab * kHidden));
    const std::vector<float> original = RandomFloats(static_cast<size_t>(kVocab * kHidden), 8);
    ASSERT_OK(Quantize(type, original.data(), kVocab * kHidden, table.data()));
    std::vector<float> dequantized(original.size());
    Dequantize(type, table.data(), kVocab * kHidden, dequantized.data());
    std::vector<int32_t> ids = {6, 0, 3, 3};
    std::vector<float> out(ids.size() * kHidden, NAN);
    auto fast = MakeFast("avx2", 2);
    fast->Embed(TensorView(ids.data(), DType::kI32, {4}),
                TensorView(table.data(), DTypeOf(type), {kVocab, kHidden}),
                TensorView(out.data(), DType::kF32, {4, kHidden}));
    for (size_t t = 0; t < ids.size(); ++t) {
      for (int64_t h = 0; h < kHidden; ++h) {
        ASSERT_EQ(out[t * kHidden + h], dequantized[ids[t] * kHidden + h]) << QuantTypeName(type);
      }
    }
  }
}

class FastElementwiseTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(FastElementwiseTest, RmsNormRopeSiluArgmaxMatchReference) {
  const auto [isa, threads] = GetParam();
  auto fast = MakeFast(isa, threads);
  CpuBackend reference;
  const int64_t t = 7, hidden = 96, heads = 4, kv_heads = 2, head_dim = 24, inter = 1100;
  // RmsNorm with and without the fused residual.
  for (bool fused : {false, true}) {
    std::vector<float> x = RandomFloats(t * hidden, 5), res1 = RandomFloats(t * hidden, 6);
    std::vector<float> res2 = res1;
    std::vector<uint8_t> weight = Encode(RandomFloats(hidden, 7), DType::kBF16);
    std::vector<float> expected(t * hidden, NAN), out(t * hidden, NAN);
    const TensorView w(weight.data(), DType::kBF16, {hidden});
    reference.RmsNorm(TensorView(x.data(), DType::kF32, {t, hidden}),
                      fused ? TensorView(res1.data(), DType::kF32, {t, hidden}) : TensorView(), w,
                      1e-5f, TensorView(expected.data(), DType::kF32, {t, hidden}));
    fast->RmsNorm(TensorView(x.data(), DType::kF32, {t, hidden}),
                  fused ? TensorView(res2.data(), DType::kF32, {t, hidden}) : TensorView(), w,
                  1e-5f, TensorView(out.data(), DType::kF32, {t, hidden}));
    EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
    EXPECT_LE(MaxRelativeError(res2, res1), kF32Tolerance);
  }
  // Rope.
  {
    std::vector<float> q1 = RandomFloats(t * heads * head_dim, 8),
                       k1 = RandomFloats(t * kv_heads * head_dim, 9);
    std::vector<float> q2 = q1, k2 = k1;
    std::vector<int32_t> positions = {0, 1, 5, 17, 300, 4095, 2};
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t d = 0; d < head_dim / 2; ++d)
      inv_freq[d] = std::pow(10000.0f, -2.0f * d / head_dim);
    const TensorView pos(positions.data(), DType::kI32, {t});
    const TensorView freq(inv_freq.data(), DType::kF32, {head_dim / 2});
    reference.Rope(TensorView(q1.data(), DType::kF32, {t, heads, head_dim}),
                   TensorView(k1.data(), DType::kF32, {t, kv_heads, head_dim}), pos, freq);
    fast->Rope(TensorView(q2.data(), DType::kF32, {t, heads, head_dim}),
               TensorView(k2.data(), DType::kF32, {t, kv_heads, head_dim}), pos, freq);
    EXPECT_LE(MaxRelativeError(q2, q1), kF32Tolerance);
    EXPECT_LE(MaxRelativeError(k2, k1), kF32Tolerance);
  }
  // SiluMul over a length that is not a multiple of the chunk or the vector width.
  {
    const std::vector<float> gate = RandomFloats(t * inter, 10, 8.0f),
                             up = RandomFloats(t * inter, 11);
    std::vector<float> expected(t * inter, NAN), out(t * inter, NAN);
    reference.SiluMul(TensorView(const_cast<float*>(gate.data()), DType::kF32, {t, inter}),
                      TensorView(const_cast<float*>(up.data()), DType::kF32, {t, inter}),
                      TensorView(expected.data(), DType::kF32, {t, inter}));
    fast->SiluMul(TensorView(const_cast<float*>(gate.data()), DType::kF32, {t, inter}),
                  TensorView(const_cast<float*>(up.data()), DType::kF32, {t, inter}),
                  TensorView(out.data(), DType::kF32, {t, inter}));
    EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
  }
  // Argmax, with ties resolved to the lowest index.
  {
    std::vector<float> logits = RandomFloats(t * 1000, 12);
    logits[3 * 1000 + 10] = 5.0f;
    logits[3 * 1000 + 900] = 5.0f;
    std::vector<int32_t> expected(t, -1), out(t, -1);
    reference.Argmax(TensorView(logits.data(), DType::kF32, {t, 1000}),
                     TensorView(expected.data(), DType::kI32, {t}));
    fast->Argmax(TensorView(logits.data(), DType::kF32, {t, 1000}),
                 TensorView(out.data(), DType::kI32, {t}));
    EXPECT_EQ(out, expected);
    EXPECT_EQ(out[3], 10);
  }
}

// (isa, threads, block_size, heads, kv_heads, head_dim)
class FastAttentionTest
    : public ::testing::TestWithParam<std::tuple<std::string, int, int, int, int, int>> {};

TEST_P(FastAttentionTest, MixedBatchMatchesReference) {
  const auto [isa, threads, block_size, heads, kv_heads, head_dim] = GetParam();
  // (context after this step, new tokens): decodes, prefill chunks, block boundaries +-1, a
  // chunk longer than one attention task (16 rows), and one of 13 rows (13 x group query
  // vectors: not a multiple of the 4 scored together when the group is 1).
  const std::vector<std::pair<int, int>> seqs = {{1, 1},
                                                 {block_size - 1 > 0 ? block_size - 1 : 2, 1},
                                                 {block_size, block_size},
                                                 {block_size + 1, 1},
                                                 {2 * block_size + 1, 3},
                                                 {70, 40},
                                                 {75, 13}};
  testing::PagedBatch batch = testing::LayOutPagedBatch(seqs, block_size, /*spare_blocks=*/0, 7);
  // Twice the blocks in use, as spare room in the pool.
  const int num_blocks = static_cast<int>(2 * batch.num_blocks);
  const int64_t max_blocks = batch.max_blocks;
  std::vector<int32_t>& tables = batch.block_tables;
  std::vector<int32_t>& query_start = batch.query_start_loc;
  std::vector<int32_t>& seq_lens = batch.seq_lens;
  const int64_t pool_elems = static_cast<int64_t>(num_blocks) * block_size * kv_heads * head_dim;
  std::vector<float> k_pool = RandomFloats(pool_elems, 20), v_pool = RandomFloats(pool_elems, 21);
  PagedKvView kv{k_pool.data(), v_pool.data(), DType::kF32, num_blocks,
                 block_size,    kv_heads,      head_dim};
  const int64_t t = query_start.back();
  std::vector<float> q = RandomFloats(t * heads * head_dim, 22);
  AttentionArgs args;
  const int64_t num_seqs = static_cast<int64_t>(seqs.size());
  args.query_start_loc = TensorView(query_start.data(), DType::kI32, {num_seqs + 1});
  args.seq_lens = TensorView(seq_lens.data(), DType::kI32, {num_seqs});
  args.block_tables = TensorView(tables.data(), DType::kI32, {num_seqs, max_blocks});
  args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const TensorView q_view(q.data(), DType::kF32, {t, heads, head_dim});
  auto fast = MakeFast(isa, threads);
  // Full causal, then sliding windows shorter than a block, than a task's 16 rows and than the
  // contexts, with the blocks before every window gone from the tables.
  for (const int window : {0, 33, 17, 5, 1}) {  // Each forgets more blocks than the last.
    if (window > 0) testing::ForgetBlocksBeforeWindows(batch, block_size, window);
    args.window = window;
    std::vector<float> expected(q.size(), NAN), out(q.size(), NAN);
    CpuBackend().PagedAttention(q_view, kv, args,
                                TensorView(expected.data(), DType::kF32, {t, heads, head_dim}));
    fast->PagedAttention(q_view, kv, args,
                         TensorView(out.data(), DType::kF32, {t, heads, head_dim}));
    EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance) << "window " << window;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, FastAttentionTest,
                         ::testing::Combine(::testing::ValuesIn(AvailableIsas()),
                                            ::testing::Values(1, 3), ::testing::Values(1, 16),
                                            ::testing::Values(4, 8), ::testing::Values(1, 4),
                                            ::testing::Values(24, 64)));

INSTANTIATE_TEST_SUITE_P(Isas, FastElementwiseTest,
                         ::testing::Combine(::testing::ValuesIn(AvailableIsas()),
                                            ::testing::Values(1, 3)));

class FastGreedyTest
    : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {};

TEST_P(FastGreedyTest, SameTokensAsReferenceFor64Steps) {
  const auto [isa, arch, dtype] = GetParam();
  testing::TempDir dir;
  ASSERT_OK(testing::WriteParityModel(dir.path(), arch, dtype));
  const std::vector<int32_t> prompt = testing::ParityPrompt();
  CpuBackend reference;
  const std::vector<int32_t> expected = Greedy(dir.path(), reference, prompt, 64);
  auto fast = MakeFast(isa, 2);
  EXPECT_EQ(Greedy(dir.path(), *fast, prompt, 64), expected);
}

INSTANTIATE_TEST_SUITE_P(Models, FastGreedyTest,
                         ::testing::Combine(::testing::ValuesIn(AvailableIsas()),
                                            ::testing::Values("llama", "qwen2", "mistral", "loop"),
                                            ::testing::Values("f32", "bf16")));

}  // namespace
}  // namespace iquest
