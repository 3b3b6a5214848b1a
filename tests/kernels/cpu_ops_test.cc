// The CPU reference ops (except attention, see paged_attention_test.cc) against float64 naive
// loops written independently here. Tolerance: normwise relative error <= 1e-5 in f32; the
// bf16-out variants within one bf16 step of float64 rounded to bf16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/random_tensor.h"

namespace iquest {
namespace {

using testing::Encode;
using testing::MaxRelativeError;
using testing::RandomFloats;

constexpr double kF32Tolerance = 1e-5;

// Widens stored weights exactly as the op must see them (f16/bf16 rounding already applied).
std::vector<double> Widen(const std::vector<uint8_t>& bytes, DType dtype, size_t n) {
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = LoadAsFloat(bytes.data(), dtype, i);
  return out;
}

class GemmTest : public ::testing::TestWithParam<std::tuple<int, int, int, DType, bool>> {};

TEST_P(GemmTest, MatchesFloat64Reference) {
  const auto [m, k, n, dtype, with_bias] = GetParam();
  std::vector<float> a = RandomFloats(m * k, 1);
  std::vector<uint8_t> w = Encode(RandomFloats(n * k, 2), dtype);
  std::vector<uint8_t> bias = Encode(RandomFloats(n, 3), dtype);
  std::vector<float> out(m * n, NAN);
  CpuBackend backend;
  backend.Gemm(TensorView(a.data(), DType::kF32, {m, k}), TensorView(w.data(), dtype, {n, k}),
               with_bias ? TensorView(bias.data(), dtype, {n}) : TensorView(),
               TensorView(out.data(), DType::kF32, {m, n}));
  const std::vector<double> w64 = Widen(w, dtype, n * k);
  const std::vector<double> b64 = Widen(bias, dtype, n);
  std::vector<double> expected(m * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = with_bias ? b64[j] : 0.0;
      for (int p = 0; p < k; ++p) sum += static_cast<double>(a[i * k + p]) * w64[j * k + p];
      expected[i * n + j] = sum;
    }
  }
  EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmTest,
                         ::testing::Values(std::make_tuple(1, 64, 32, DType::kF32, false),
                                           std::make_tuple(1, 128, 129, DType::kBF16, true),
                                           std::make_tuple(7, 127, 65, DType::kF16, true),
                                           std::make_tuple(15, 256, 17, DType::kF32, true),
                                           std::make_tuple(16, 64, 255, DType::kBF16, false),
                                           std::make_tuple(17, 33, 1, DType::kF32, true),
                                           std::make_tuple(33, 512, 48, DType::kF16, false)));

class RmsNormTest : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(RmsNormTest, MatchesFloat64Reference) {
  const auto [tokens, hidden, fused_residual] = GetParam();
  const float eps = 1e-5f;
  std::vector<float> x = RandomFloats(tokens * hidden, 4);
  std::vector<float> residual = RandomFloats(tokens * hidden, 5);
  std::vector<uint8_t> weight = Encode(RandomFloats(hidden, 6, 2.0f), DType::kBF16);
  std::vector<float> out(tokens * hidden, NAN);
  const std::vector<float> residual_before = residual;
  CpuBackend backend;
  backend.RmsNorm(
      TensorView(x.data(), DType::kF32, {tokens, hidden}),
      fused_residual ? TensorView(residual.data(), DType::kF32, {tokens, hidden}) : TensorView(),
      TensorView(weight.data(), DType::kBF16, {hidden}), eps,
      TensorView(out.data(), DType::kF32, {tokens, hidden}));
  std::vector<double> expected(tokens * hidden), expected_residual(tokens * hidden);
  for (int t = 0; t < tokens; ++t) {
    double sum_squares = 0.0;
    for (int h = 0; h < hidden; ++h) {
      const int i = t * hidden + h;
      expected_residual[i] = static_cast<double>(x[i]) + (fused_residual ? residual_before[i] : 0);
      sum_squares += expected_residual[i] * expected_residual[i];
    }
    const double inv_rms = 1.0 / std::sqrt(sum_squares / hidden + eps);
    for (int h = 0; h < hidden; ++h) {
      const int i = t * hidden + h;
      expected[i] = expected_residual[i] * inv_rms * LoadAsFloat(weight.data(), DType::kBF16, h);
    }
  }
  EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
  if (fused_residual) {
    EXPECT_LE(MaxRelativeError(residual, expected_residual), kF32Tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormTest,
                         ::testing::Values(std::make_tuple(1, 64, false),
                                           std::make_tuple(1, 1, true),
                                           std::make_tuple(5, 127, true),
                                           std::make_tuple(17, 4096, false),
                                           std::make_tuple(3, 4096, true)));

class RopeTest : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(RopeTest, MatchesFloat64Reference) {
  const auto [tokens, heads, kv_heads, head_dim] = GetParam();
  const int half = head_dim / 2;
  std::vector<float> q = RandomFloats(tokens * heads * head_dim, 7);
  std::vector<float> k = RandomFloats(tokens * kv_heads * head_dim, 8);
  const std::vector<float> q0 = q, k0 = k;
  std::vector<int32_t> positions(tokens);
  for (int t = 0; t < tokens; ++t) positions[t] = (t * 977) % 5000;  // Scattered, up to 5k.
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = static_cast<float>(std::pow(5e5, -2.0 * i / head_dim));
  CpuBackend backend;
  backend.Rope(TensorView(q.data(), DType::kF32, {tokens, heads, head_dim}),
               TensorView(k.data(), DType::kF32, {tokens, kv_heads, head_dim}),
               TensorView(positions.data(), DType::kI32, {tokens}),
               TensorView(inv_freq.data(), DType::kF32, {half}));
  // HF rotate_half: x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x2, x1).
  auto reference = [&](const std::vector<float>& x, int num_heads) {
    std::vector<double> out(x.size());
    for (int t = 0; t < tokens; ++t) {
      for (int h = 0; h < num_heads; ++h) {
        const int base = (t * num_heads + h) * head_dim;
        for (int d = 0; d < head_dim; ++d) {
          const double angle = static_cast<double>(positions[t]) * inv_freq[d % half];
          const double rotated = d < half ? -static_cast<double>(x[base + d + half])
                                          : static_cast<double>(x[base + d - half]);
          out[base + d] = x[base + d] * std::cos(angle) + rotated * std::sin(angle);
        }
      }
    }
    return out;
  };
  EXPECT_LE(MaxRelativeError(q, reference(q0, heads)), kF32Tolerance);
  EXPECT_LE(MaxRelativeError(k, reference(k0, kv_heads)), kF32Tolerance);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeTest,
                         ::testing::Values(std::make_tuple(1, 4, 1, 64),
                                           std::make_tuple(7, 8, 2, 128),
                                           std::make_tuple(33, 4, 4, 64),
                                           std::make_tuple(3, 8, 1, 128)));

TEST(SiluMulTest, MatchesFloat64Reference) {
  for (int n : {1, 17, 4096}) {
    std::vector<float> gate = RandomFloats(n, 9, 8.0f);
    std::vector<float> up = RandomFloats(n, 10, 2.0f);
    std::vector<float> out(n, NAN);
    CpuBackend backend;
    backend.SiluMul(TensorView(gate.data(), DType::kF32, {1, n}),
                    TensorView(up.data(), DType::kF32, {1, n}),
                    TensorView(out.data(), DType::kF32, {1, n}));
    std::vector<double> expected(n);
    for (int i = 0; i < n; ++i) {
      const double g = gate[i];
      expected[i] = g / (1.0 + std::exp(-g)) * up[i];
    }
    EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance) << "n=" << n;
  }
}

// --- The 16-bit variants a GPU backend's gemm_input_dtype() asks for. RmsNorm and SiluMul
// compute in f32 and round once on the store, so each bf16 element is (a) exactly the f32 op's
// result rounded to nearest even and (b) within one bf16 step of the float64 value rounded to
// bf16 (a step, not half of one: the f32 result may sit on the other side of a rounding
// boundary than the float64 one).

// How many bf16 values lie between two bf16 bit patterns (0 = equal; +0 and -0 are equal).
int Bf16Steps(uint16_t a, uint16_t b) {
  auto ordered = [](uint16_t bits) {
    return (bits & 0x8000u) != 0 ? -static_cast<int>(bits & 0x7fffu) : static_cast<int>(bits);
  };
  return std::abs(ordered(a) - ordered(b));
}

// Checks `out` (bf16 bits) against the f32 op's output and the float64 reference.
void ExpectRoundedOnce(const std::vector<uint16_t>& out, const std::vector<float>& out_f32,
                       const std::vector<double>& expected) {
  ASSERT_EQ(out.size(), expected.size());
  int mismatches = 0, max_steps = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] != FloatToBf16(out_f32[i])) ++mismatches;
    max_steps =
        std::max(max_steps, Bf16Steps(out[i], FloatToBf16(static_cast<float>(expected[i]))));
  }
  EXPECT_EQ(mismatches, 0) << "bf16 out differs from the f32 out rounded";
  EXPECT_LE(max_steps, 1) << "bf16 steps from float64 rounded to bf16";
}

class RmsNormBf16OutTest : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(RmsNormBf16OutTest, RoundsTheF32ResultOnce) {
  const auto [tokens, hidden, fused_residual] = GetParam();
  const float eps = 1e-5f;
  const std::vector<float> x = RandomFloats(tokens * hidden, 21, 3.0f);
  const std::vector<float> residual_before = RandomFloats(tokens * hidden, 22, 3.0f);
  const std::vector<uint8_t> weight = Encode(RandomFloats(hidden, 23, 2.0f), DType::kBF16);
  const TensorView weight_view(const_cast<uint8_t*>(weight.data()), DType::kBF16, {hidden});
  CpuBackend backend;
  // The same call twice, into an f32 out and into a bf16 out, each from the same inputs.
  auto run = [&](TensorView out, std::vector<float>& residual) {
    std::vector<float> x_copy = x;
    residual = residual_before;
    backend.RmsNorm(
        TensorView(x_copy.data(), DType::kF32, {tokens, hidden}),
        fused_residual ? TensorView(residual.data(), DType::kF32, {tokens, hidden}) : TensorView(),
        weight_view, eps, out);
  };
  std::vector<float> out_f32(tokens * hidden, NAN), residual_f32, residual_bf16;
  std::vector<uint16_t> out(tokens * hidden, 0x7fc0);
  run(TensorView(out_f32.data(), DType::kF32, {tokens, hidden}), residual_f32);
  run(TensorView(out.data(), DType::kBF16, {tokens, hidden}), residual_bf16);
  EXPECT_EQ(residual_bf16, residual_f32) << "the residual stream stays f32";
  std::vector<double> expected(tokens * hidden);
  for (int t = 0; t < tokens; ++t) {
    double sum_squares = 0.0;
    std::vector<double> row(hidden);
    for (int h = 0; h < hidden; ++h) {
      const int i = t * hidden + h;
      row[h] = static_cast<double>(x[i]) + (fused_residual ? residual_before[i] : 0.0);
      sum_squares += row[h] * row[h];
    }
    const double inv_rms = 1.0 / std::sqrt(sum_squares / hidden + eps);
    for (int h = 0; h < hidden; ++h) {
      expected[t * hidden + h] = row[h] * inv_rms * LoadAsFloat(weight.data(), DType::kBF16, h);
    }
  }
  ExpectRoundedOnce(out, out_f32, expected);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormBf16OutTest,
                         ::testing::Values(std::make_tuple(1, 64, false),
                                           std::make_tuple(1, 1, true),
                                           std::make_tuple(5, 127, true),
                                           std::make_tuple(3, 4096, true)));

TEST(SiluMulBf16OutTest, RoundsTheF32ResultOnce) {
  for (int n : {1, 17, 4096}) {
    const std::vector<float> gate = RandomFloats(n, 24, 8.0f);
    const std::vector<float> up = RandomFloats(n, 25, 2.0f);
    std::vector<float> out_f32(n, NAN);
    std::vector<uint16_t> out(n, 0x7fc0);
    CpuBackend backend;
    const TensorView gate_view(const_cast<float*>(gate.data()), DType::kF32, {1, n});
    const TensorView up_view(const_cast<float*>(up.data()), DType::kF32, {1, n});
    backend.SiluMul(gate_view, up_view, TensorView(out_f32.data(), DType::kF32, {1, n}));
    backend.SiluMul(gate_view, up_view, TensorView(out.data(), DType::kBF16, {1, n}));
    std::vector<double> expected(n);
    for (int i = 0; i < n; ++i) {
      const double g = gate[i];
      expected[i] = g / (1.0 + std::exp(-g)) * up[i];
    }
    SCOPED_TRACE(n);
    ExpectRoundedOnce(out, out_f32, expected);
  }
}

class GemmBf16ATest : public ::testing::TestWithParam<std::tuple<int, int, int, DType>> {};

// A bf16 `a` is read as the f32 values it holds: the float64 sums of those within the f32
// tolerance, and bit for bit the f32 path given the widened values.
TEST_P(GemmBf16ATest, MatchesFloat64Reference) {
  const auto [m, k, n, w_dtype] = GetParam();
  const std::vector<uint8_t> a = Encode(RandomFloats(m * k, 26), DType::kBF16);
  const std::vector<double> a64 = Widen(a, DType::kBF16, m * k);
  std::vector<float> a_widened(a64.begin(), a64.end());
  std::vector<uint8_t> w = Encode(RandomFloats(n * k, 27), w_dtype);
  std::vector<uint8_t> bias = Encode(RandomFloats(n, 28), DType::kF32);
  std::vector<float> out(m * n, NAN), out_f32(m * n, NAN);
  CpuBackend backend;
  const TensorView w_view(w.data(), w_dtype, {n, k});
  const TensorView bias_view(bias.data(), DType::kF32, {n});
  backend.Gemm(TensorView(const_cast<uint8_t*>(a.data()), DType::kBF16, {m, k}), w_view, bias_view,
               TensorView(out.data(), DType::kF32, {m, n}));
  backend.Gemm(TensorView(a_widened.data(), DType::kF32, {m, k}), w_view, bias_view,
               TensorView(out_f32.data(), DType::kF32, {m, n}));
  EXPECT_EQ(out, out_f32);
  const std::vector<double> w64 = Widen(w, w_dtype, n * k);
  const std::vector<double> b64 = Widen(bias, DType::kF32, n);
  std::vector<double> expected(m * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = b64[j];
      for (int p = 0; p < k; ++p) sum += a64[i * k + p] * w64[j * k + p];
      expected[i * n + j] = sum;
    }
  }
  EXPECT_LE(MaxRelativeError(out, expected), kF32Tolerance);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmBf16ATest,
                         ::testing::Values(std::make_tuple(1, 128, 129, DType::kBF16),
                                           std::make_tuple(7, 127, 65, DType::kF16),
                                           std::make_tuple(17, 64, 33, DType::kF32),
                                           std::make_tuple(33, 512, 48, DType::kBF16)));

TEST(EmbedTest, GathersRowsExactlyInEveryDType) {
  const int vocab = 11, hidden = 6;
  const std::vector<float> table = RandomFloats(vocab * hidden, 11);
  std::vector<int32_t> ids = {0, 10, 3, 3};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> stored = Encode(table, dtype);
    std::vector<float> out(ids.size() * hidden, NAN);
    CpuBackend backend;
    backend.Embed(TensorView(ids.data(), DType::kI32, {4}),
                  TensorView(stored.data(), dtype, {vocab, hidden}),
                  TensorView(out.data(), DType::kF32, {4, hidden}));
    for (size_t t = 0; t < ids.size(); ++t) {
      for (int h = 0; h < hidden; ++h) {
        EXPECT_EQ(out[t * hidden + h], LoadAsFloat(stored.data(), dtype, ids[t] * hidden + h));
      }
    }
  }
}

TEST(ArgmaxTest, PicksTheLargestAndTheLowestIndexOnTies) {
  std::vector<float> logits = {0.5f,  2.0f,  -1.0f, 2.0f,   // tie between 1 and 3 -> 1
                               -3.0f, -2.0f, -9.0f, -1.0f,  // all negative -> 3
                               7.0f,  7.0f,  7.0f,  7.0f};  // all equal -> 0
  std::vector<int32_t> out(3, -1);
  CpuBackend backend;
  backend.Argmax(TensorView(logits.data(), DType::kF32, {3, 4}),
                 TensorView(out.data(), DType::kI32, {3}));
  EXPECT_EQ(out, (std::vector<int32_t>{1, 3, 0}));
}

}  // namespace
}  // namespace iquest
