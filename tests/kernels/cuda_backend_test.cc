// The CUDA backend against the CPU reference ops, through the Backend interface, on odd shapes
// (tile edges +-1), with outputs poisoned before each run (the KV cache, attention and the Loop
// gate: cuda_attention_test.cc); and end to end, the greedy output of tiny bf16 models for 64
// tokens equal to the CPU reference's. Labelled `gpu`: every test skips where MakeBackend(kCuda)
// finds no device.
//
// Tolerances (normwise relative): 1e-5 where the GPU computes in f32 (norms, RoPE, SiLU, the
// SIMT GEMM on f32 weights); 1e-2 where an operand is rounded to 16 bits (the tensor-core GEMMs
// round A to the weights' type; attention over a bf16 cache).
#include "kernels/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/sampling_reference.h"
#include "tests/testing/cuda_backend_fixture.h"
#include "tests/testing/greedy.h"
#include "tests/testing/random_tensor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {
namespace {

using testing::DeviceTensor;
using testing::Encode;
using testing::k16BitTolerance;
using testing::kF32Tolerance;
using testing::MakeCuda;
using testing::MaxRelativeError;
using testing::Poisoned;
using testing::RandomFloats;
using testing::ToDevice;
using testing::ToHost;

// (gemm path, weight dtype, m); every n at tile edges, k with and without K-tile tails.
using GemmParam = std::tuple<std::string, DType, int>;
class CudaGemmTest : public ::testing::TestWithParam<GemmParam> {};

TEST_P(CudaGemmTest, MatchesReference) {
  const auto [gemm, dtype, m] = GetParam();
  auto cuda = MakeCuda(gemm);
  SKIP_WITHOUT_GPU(cuda);
  CpuBackend reference;
  for (int n : {1, 127, 129, 1000}) {
    for (int k : {64, 72, 100, 4104}) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " k=" << k << " bias=" << with_bias);
        const std::vector<float> a = RandomFloats(static_cast<size_t>(m) * k, 1);
        const std::vector<uint8_t> w = Encode(RandomFloats(static_cast<size_t>(n) * k, 2), dtype);
        const std::vector<float> bias = RandomFloats(n, 3);
        std::vector<float> expected(static_cast<size_t>(m) * n, NAN);
        const TensorView w_host(const_cast<uint8_t*>(w.data()), dtype, {n, k});
        reference.Gemm(TensorView(const_cast<float*>(a.data()), DType::kF32, {m, k}), w_host,
                       with_bias ? TensorView(const_cast<float*>(bias.data()), DType::kF32, {n})
                                 : TensorView(),
                       TensorView(expected.data(), DType::kF32, {m, n}));
        DeviceTensor a_dev = ToDevice(*cuda, a.data(), DType::kF32, {m, k});
        DeviceTensor w_dev = ToDevice(*cuda, w.data(), dtype, {n, k});
        DeviceTensor bias_dev = ToDevice(*cuda, bias.data(), DType::kF32, {n});
        DeviceTensor out = Poisoned(*cuda, {m, n});
        cuda->Gemm(a_dev.view, w_dev.view, with_bias ? bias_dev.view : TensorView(), out.view);
        const double tolerance =
            dtype == DType::kF32 || gemm == "simt" ? kF32Tolerance : k16BitTolerance;
        EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, out), expected), tolerance);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaGemmTest,
                         ::testing::Combine(::testing::Values("auto", "mma", "simt"),
                                            ::testing::Values(DType::kBF16, DType::kF16,
                                                              DType::kF32),
                                            ::testing::Values(1, 15, 17, 64, 65, 129, 300)));

// The bf16 GEMM inputs (Backend::gemm_input_dtype): RmsNorm and SiluMul writing bf16, and
// Gemm reading a bf16 `a` as it is, against the CPU reference's bf16 variants. Outputs may
// differ from the reference by one bf16 step (2^-8 relative: the f32 sums run in another
// order); the GEMMs read the same bf16 values, so they agree to f32 summation order.
TEST(CudaGemmInputTest, Bf16OutputsAndInputsMatchReference) {
  for (const char* gemm : {"auto", "mma", "simt"}) {
    SCOPED_TRACE(gemm);
    auto cuda = MakeCuda(gemm);
    SKIP_WITHOUT_GPU(cuda);
    EXPECT_EQ(cuda->gemm_input_dtype(), std::string(gemm) == "simt" ? DType::kF32 : DType::kBF16);
    CpuBackend reference;
    const int64_t t = 7, h = 4104, inter = 1101, n = 129;
    auto widen = [](const std::vector<uint16_t>& bits) {
      std::vector<float> out(bits.size());
      for (size_t i = 0; i < bits.size(); ++i) out[i] = Bf16ToFloat(bits[i]);
      return out;
    };
    auto poisoned16 = [&](std::initializer_list<int64_t> shape) {
      std::vector<uint16_t> nan(
          static_cast<size_t>(TensorView(nullptr, DType::kBF16, shape).numel()), 0x7fc0);
      return ToDevice(*cuda, nan.data(), DType::kBF16, shape);
    };
    // RmsNorm, fused residual, bf16 out.
    std::vector<float> x = RandomFloats(t * h, 31), res = RandomFloats(t * h, 32);
    const std::vector<float> weight = RandomFloats(h, 33);
    std::vector<uint16_t> expected_x(t * h);
    std::vector<float> res_expected = res;
    const TensorView w_host(const_cast<float*>(weight.data()), DType::kF32, {h});
    reference.RmsNorm(TensorView(x.data(), DType::kF32, {t, h}),
                      TensorView(res_expected.data(), DType::kF32, {t, h}), w_host, 1e-5f,
                      TensorView(expected_x.data(), DType::kBF16, {t, h}));
    DeviceTensor x_dev = ToDevice(*cuda, x.data(), DType::kF32, {t, h});
    DeviceTensor res_dev = ToDevice(*cuda, res.data(), DType::kF32, {t, h});
    ASSERT_OK_AND_ASSIGN(TensorView w_dev, cuda->UploadWeight(w_host));
    DeviceTensor x16 = poisoned16({t, h});
    cuda->RmsNorm(x_dev.view, res_dev.view, w_dev, 1e-5f, x16.view);
    EXPECT_LE(MaxRelativeError(widen(ToHost<uint16_t>(*cuda, x16)), widen(expected_x)), 1.0 / 256);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, res_dev), res_expected), kF32Tolerance);
    // SiluMul, bf16 out, a length that is not a multiple of 4.
    const std::vector<float> gate = RandomFloats(t * inter, 34, 8.0f),
                             up = RandomFloats(t * inter, 35);
    std::vector<uint16_t> expected_act(t * inter);
    reference.SiluMul(TensorView(const_cast<float*>(gate.data()), DType::kF32, {t, inter}),
                      TensorView(const_cast<float*>(up.data()), DType::kF32, {t, inter}),
                      TensorView(expected_act.data(), DType::kBF16, {t, inter}));
    DeviceTensor g = ToDevice(*cuda, gate.data(), DType::kF32, {t, inter});
    DeviceTensor u = ToDevice(*cuda, up.data(), DType::kF32, {t, inter});
    DeviceTensor act = poisoned16({t, inter});
    cuda->SiluMul(g.view, u.view, act.view);
    EXPECT_LE(MaxRelativeError(widen(ToHost<uint16_t>(*cuda, act)), widen(expected_act)),
              1.0 / 256);
    // Gemm reading the bf16 hidden state (the reference's, so both read the same values).
    const std::vector<uint8_t> wq = Encode(RandomFloats(n * h, 36), DType::kBF16);
    const TensorView wq_host(const_cast<uint8_t*>(wq.data()), DType::kBF16, {n, h});
    std::vector<float> expected_q(t * n, NAN);
    reference.Gemm(TensorView(expected_x.data(), DType::kBF16, {t, h}), wq_host, TensorView(),
                   TensorView(expected_q.data(), DType::kF32, {t, n}));
    DeviceTensor a16 = ToDevice(*cuda, expected_x.data(), DType::kBF16, {t, h});
    ASSERT_OK_AND_ASSIGN(TensorView wq_dev, cuda->UploadWeight(wq_host));
    DeviceTensor q = Poisoned(*cuda, {t, n});
    cuda->Gemm(a16.view, wq_dev, TensorView(), q.view);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, q), expected_q), 1e-4);
  }
}

TEST(CudaElementwiseTest, MatchesReference) {
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  CpuBackend reference;
  const int64_t t = 7, hidden = 96, heads = 4, kv_heads = 2, head_dim = 24, inter = 1101;
  // RmsNorm with and without the fused residual; hidden 96 (float4 rows) and 97 (scalar).
  for (int64_t h : {hidden, hidden + 1}) {
    for (bool fused : {false, true}) {
      std::vector<float> x = RandomFloats(t * h, 5), res = RandomFloats(t * h, 6);
      const std::vector<float> weight = RandomFloats(h, 7);
      std::vector<float> expected(t * h, NAN), res_expected = res;
      const TensorView w_host(const_cast<float*>(weight.data()), DType::kF32, {h});
      reference.RmsNorm(TensorView(x.data(), DType::kF32, {t, h}),
                        fused ? TensorView(res_expected.data(), DType::kF32, {t, h}) : TensorView(),
                        w_host, 1e-5f, TensorView(expected.data(), DType::kF32, {t, h}));
      DeviceTensor x_dev = ToDevice(*cuda, x.data(), DType::kF32, {t, h});
      DeviceTensor res_dev = ToDevice(*cuda, res.data(), DType::kF32, {t, h});
      ASSERT_OK_AND_ASSIGN(TensorView w_dev, cuda->UploadWeight(w_host));
      DeviceTensor out = Poisoned(*cuda, {t, h});
      cuda->RmsNorm(x_dev.view, fused ? res_dev.view : TensorView(), w_dev, 1e-5f, out.view);
      EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, out), expected), kF32Tolerance);
      if (fused) {
        EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, res_dev), res_expected), kF32Tolerance);
      }
    }
  }
  // Rope.
  {
    std::vector<float> q = RandomFloats(t * heads * head_dim, 8),
                       k = RandomFloats(t * kv_heads * head_dim, 9);
    std::vector<int32_t> positions = {0, 1, 5, 17, 300, 4095, 131071};
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t d = 0; d < head_dim / 2; ++d) {
      inv_freq[d] = std::pow(10000.0f, -2.0f * d / head_dim);
    }
    DeviceTensor q_dev = ToDevice(*cuda, q.data(), DType::kF32, {t, heads, head_dim});
    DeviceTensor k_dev = ToDevice(*cuda, k.data(), DType::kF32, {t, kv_heads, head_dim});
    DeviceTensor pos_dev = ToDevice(*cuda, positions.data(), DType::kI32, {t});
    DeviceTensor freq_dev = ToDevice(*cuda, inv_freq.data(), DType::kF32, {head_dim / 2});
    reference.Rope(TensorView(q.data(), DType::kF32, {t, heads, head_dim}),
                   TensorView(k.data(), DType::kF32, {t, kv_heads, head_dim}),
                   TensorView(positions.data(), DType::kI32, {t}),
                   TensorView(inv_freq.data(), DType::kF32, {head_dim / 2}));
    cuda->Rope(q_dev.view, k_dev.view, pos_dev.view, freq_dev.view);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, q_dev), q), kF32Tolerance);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, k_dev), k), kF32Tolerance);
  }
  // SiluMul over a length that is not a multiple of 4.
  {
    const std::vector<float> gate = RandomFloats(t * inter, 10, 8.0f),
                             up = RandomFloats(t * inter, 11);
    std::vector<float> expected(t * inter, NAN);
    reference.SiluMul(TensorView(const_cast<float*>(gate.data()), DType::kF32, {t, inter}),
                      TensorView(const_cast<float*>(up.data()), DType::kF32, {t, inter}),
                      TensorView(expected.data(), DType::kF32, {t, inter}));
    DeviceTensor g = ToDevice(*cuda, gate.data(), DType::kF32, {t, inter});
    DeviceTensor u = ToDevice(*cuda, up.data(), DType::kF32, {t, inter});
    DeviceTensor out = Poisoned(*cuda, {t, inter});
    cuda->SiluMul(g.view, u.view, out.view);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, out), expected), kF32Tolerance);
  }
  // Argmax with a tie (the lowest index wins); Embed from a bf16 table.
  {
    std::vector<float> logits = RandomFloats(t * 1000, 12);
    logits[3 * 1000 + 10] = 5.0f;
    logits[3 * 1000 + 900] = 5.0f;
    std::vector<int32_t> expected(t, -1);
    reference.Argmax(TensorView(logits.data(), DType::kF32, {t, 1000}),
                     TensorView(expected.data(), DType::kI32, {t}));
    DeviceTensor in = ToDevice(*cuda, logits.data(), DType::kF32, {t, 1000});
    std::vector<int32_t> poison(t, -7);
    DeviceTensor out = ToDevice(*cuda, poison.data(), DType::kI32, {t});
    cuda->Argmax(in.view, out.view);
    EXPECT_EQ(ToHost<int32_t>(*cuda, out), expected);
  }
  {
    const int64_t vocab = 50;
    const std::vector<uint8_t> table = Encode(RandomFloats(vocab * hidden, 13), DType::kBF16);
    std::vector<int32_t> ids = {0, 49, 7, 7, 1, 30, 2};
    std::vector<float> expected(t * hidden, NAN);
    const TensorView table_host(const_cast<uint8_t*>(table.data()), DType::kBF16, {vocab, hidden});
    reference.Embed(TensorView(ids.data(), DType::kI32, {t}), table_host,
                    TensorView(expected.data(), DType::kF32, {t, hidden}));
    ASSERT_OK_AND_ASSIGN(TensorView table_dev, cuda->UploadWeight(table_host));
    DeviceTensor ids_dev = ToDevice(*cuda, ids.data(), DType::kI32, {t});
    DeviceTensor out = Poisoned(*cuda, {t, hidden});
    cuda->Embed(ids_dev.view, table_dev, out.view);
    EXPECT_EQ(ToHost<float>(*cuda, out), expected);
  }
}

TEST(CudaSamplingTest, MatchesTheReferenceRowByRow) {
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  const int64_t rows = 64, vocab = 5003;
  const std::vector<float> logits = RandomFloats(rows * vocab, 40, 6.0f);
  std::mt19937 rng(41);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<cuda::SamplingRowParams> params(rows);
  for (int64_t r = 0; r < rows; ++r) {
    cuda::SamplingRowParams& p = params[static_cast<size_t>(r)];
    p.temperature = 0.3f + unit(rng);
    p.top_k = r % 4 == 0 ? 0 : static_cast<int32_t>(1 + r * 13 % 200);
    p.top_p = r % 3 == 0 ? 1.0f : 0.5f + 0.5f * unit(rng);
    p.min_p = r % 5 == 0 ? 0.05f * unit(rng) : 0.0f;
    p.uniform = unit(rng);
  }
  DeviceTensor in = ToDevice(*cuda, logits.data(), DType::kF32, {rows, vocab});
  std::vector<int32_t> tokens;
  cuda->DrawRows(in.view, params, tokens);
  int mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const cuda::SamplingRowParams& p = params[static_cast<size_t>(r)];
    const cpu::SamplingRow row{p.temperature, p.top_k, p.top_p, p.min_p, p.uniform};
    const int32_t expected = cpu::SampleTokenReference(
        std::span<const float>(logits.data() + r * vocab, static_cast<size_t>(vocab)), row);
    if (tokens[static_cast<size_t>(r)] != expected) ++mismatches;
  }
  // A draw within f32 rounding of a bucket edge may fall either side; on random uniforms that
  // is rare enough that one row in 64 is already suspicious.
  EXPECT_LE(mismatches, 1);
}

// (arch, kv cache dtype): tiny bf16 models, the engine's greedy path, 64 tokens.
class CudaGreedyTest : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(CudaGreedyTest, SameTokensAsReferenceFor64Steps) {
  const auto [arch, kv_dtype] = GetParam();
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  testing::TempDir dir;
  ASSERT_OK(testing::WriteParityModel(dir.path(), arch, "bf16"));
  const std::vector<int32_t> prompt = testing::ParityPrompt();
  CpuBackend reference;
  const std::vector<int32_t> expected = testing::Greedy(dir.path(), reference, prompt, 64);
  EXPECT_EQ(testing::Greedy(dir.path(), *cuda, prompt, 64, kv_dtype), expected);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaGreedyTest,
                         ::testing::Combine(::testing::Values("llama", "qwen2", "mistral", "loop"),
                                            ::testing::Values(DType::kF32, DType::kBF16)));

}  // namespace
}  // namespace iquest
