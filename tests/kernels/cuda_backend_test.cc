// The CUDA backend against the CPU reference ops, through the Backend interface, on odd shapes
// (tile edges +-1, block boundaries +-1, seq_len 1, GQA ratios 1/5/8), with outputs poisoned
// before each run; and end to end, the greedy output of tiny bf16 models for 64 tokens equal to
// the CPU reference's. Labelled `gpu`: every test skips where MakeBackend(kCuda) finds no device.
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
#include "tests/testing/greedy.h"
#include "tests/testing/paged_batch.h"
#include "tests/testing/random_tensor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {
namespace {

using cuda::CudaBackend;
using testing::Encode;
using testing::MaxRelativeError;
using testing::RandomFloats;

constexpr double kF32Tolerance = 1e-5;
constexpr double k16BitTolerance = 1e-2;

// The CUDA backend with `gemm`, or null (the test skips) when there is no device.
std::unique_ptr<CudaBackend> MakeCuda(const std::string& gemm = "auto") {
  BackendOptions options;
  options.gemm = gemm;
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create(options);
  if (!backend.ok()) return nullptr;
  return std::move(*backend);
}

#define SKIP_WITHOUT_GPU(backend) \
  if ((backend) == nullptr) GTEST_SKIP() << "no CUDA device"

// A device copy of host bytes, viewed with `shape`; freed with the object.
struct DeviceTensor {
  std::unique_ptr<DeviceBuffer> buffer;
  TensorView view;
};

DeviceTensor ToDevice(Backend& backend, const void* host, DType dtype,
                      std::initializer_list<int64_t> shape) {
  const TensorView probe(nullptr, dtype, shape);
  auto buffer = backend.Allocate(probe.num_bytes());
  CHECK(buffer.ok()) << buffer.status();
  backend.CopyToDevice(host, (*buffer)->data(), probe.num_bytes());
  DeviceTensor t{std::move(*buffer), TensorView()};
  t.view = TensorView(t.buffer->data(), dtype, shape);
  return t;
}

// An f32 device tensor poisoned with NaN.
DeviceTensor Poisoned(Backend& backend, std::initializer_list<int64_t> shape) {
  const TensorView probe(nullptr, DType::kF32, shape);
  std::vector<float> nan(static_cast<size_t>(probe.numel()), NAN);
  return ToDevice(backend, nan.data(), DType::kF32, shape);
}

template <typename T>
std::vector<T> ToHost(Backend& backend, const DeviceTensor& t) {
  std::vector<T> host(t.view.num_bytes() / sizeof(T));
  backend.CopyToHost(t.view.data(), host.data(), t.view.num_bytes());
  return host;
}

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

// A paged cache on the host and its device copy, with shuffled physical blocks.
struct CacheFixture {
  std::vector<uint8_t> k_host, v_host;
  DeviceTensor k_dev, v_dev;
  PagedKvView host, device;
};

CacheFixture MakeCache(Backend& cuda, DType dtype, int64_t num_blocks, int64_t block_size,
                       int64_t kv_heads, int64_t head_dim, uint32_t seed) {
  CacheFixture c;
  const int64_t elems = num_blocks * block_size * kv_heads * head_dim;
  c.k_host = Encode(RandomFloats(elems, seed), dtype);
  c.v_host = Encode(RandomFloats(elems, seed + 1), dtype);
  c.k_dev = ToDevice(cuda, c.k_host.data(), dtype, {elems});
  c.v_dev = ToDevice(cuda, c.v_host.data(), dtype, {elems});
  c.host = PagedKvView{c.k_host.data(), c.v_host.data(), dtype,   num_blocks,
                       block_size,      kv_heads,        head_dim};
  c.device = c.host;
  c.device.k = c.k_dev.view.data();
  c.device.v = c.v_dev.view.data();
  return c;
}

TEST(CudaKvTest, RopeWriteKvAndCopyBlocksMatchReference) {
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  CpuBackend reference;
  const int64_t t = 5, heads = 4, kv_heads = 2, head_dim = 64, block_size = 16, blocks = 6;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    CacheFixture c = MakeCache(*cuda, dtype, blocks, block_size, kv_heads, head_dim, 30);
    std::vector<float> q = RandomFloats(t * heads * head_dim, 31),
                       k = RandomFloats(t * kv_heads * head_dim, 32),
                       v = RandomFloats(t * kv_heads * head_dim, 33);
    std::vector<int32_t> positions = {3, 15, 16, 17, 90}, slots = {3, 15, 16, -1, 90};
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t d = 0; d < head_dim / 2; ++d) {
      inv_freq[d] = std::pow(10000.0f, -2.0f * d / head_dim);
    }
    DeviceTensor q_dev = ToDevice(*cuda, q.data(), DType::kF32, {t, heads, head_dim});
    DeviceTensor k_dev = ToDevice(*cuda, k.data(), DType::kF32, {t, kv_heads, head_dim});
    DeviceTensor v_dev = ToDevice(*cuda, v.data(), DType::kF32, {t, kv_heads, head_dim});
    DeviceTensor pos_dev = ToDevice(*cuda, positions.data(), DType::kI32, {t});
    DeviceTensor slot_dev = ToDevice(*cuda, slots.data(), DType::kI32, {t});
    DeviceTensor freq_dev = ToDevice(*cuda, inv_freq.data(), DType::kF32, {head_dim / 2});
    reference.RopeWriteKv(TensorView(q.data(), DType::kF32, {t, heads, head_dim}),
                          TensorView(k.data(), DType::kF32, {t, kv_heads, head_dim}),
                          TensorView(v.data(), DType::kF32, {t, kv_heads, head_dim}),
                          TensorView(positions.data(), DType::kI32, {t}),
                          TensorView(inv_freq.data(), DType::kF32, {head_dim / 2}),
                          TensorView(slots.data(), DType::kI32, {t}), c.host);
    cuda->RopeWriteKv(q_dev.view, k_dev.view, v_dev.view, pos_dev.view, freq_dev.view,
                      slot_dev.view, c.device);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, q_dev), q), kF32Tolerance);
    // The caches hold the same values (bf16 rounding of values within 1e-5 of each other can
    // differ by one bf16 ulp).
    auto widen = [&](const std::vector<uint8_t>& bytes) {
      std::vector<float> out(bytes.size() / DTypeSize(dtype));
      for (size_t i = 0; i < out.size(); ++i) out[i] = LoadAsFloat(bytes.data(), dtype, i);
      return out;
    };
    const double tolerance = dtype == DType::kF32 ? kF32Tolerance : k16BitTolerance;
    EXPECT_LE(MaxRelativeError(widen(ToHost<uint8_t>(*cuda, c.k_dev)), widen(c.k_host)), tolerance);
    EXPECT_LE(MaxRelativeError(widen(ToHost<uint8_t>(*cuda, c.v_dev)), widen(c.v_host)), tolerance);
    // Copy-on-write of two blocks.
    std::vector<int32_t> pairs = {0, 4, 5, 2};
    DeviceTensor pairs_dev = ToDevice(*cuda, pairs.data(), DType::kI32, {2, 2});
    reference.CopyKvBlocks(TensorView(pairs.data(), DType::kI32, {2, 2}), c.host);
    cuda->CopyKvBlocks(pairs_dev.view, c.device);
    EXPECT_EQ(widen(ToHost<uint8_t>(*cuda, c.k_dev)), widen(c.k_host));
    EXPECT_EQ(widen(ToHost<uint8_t>(*cuda, c.v_dev)), widen(c.v_host));
  }
}

// (kv dtype, block_size, heads, kv_heads, head_dim)
using AttentionParam = std::tuple<DType, int, int, int, int>;
class CudaAttentionTest : public ::testing::TestWithParam<AttentionParam> {};

TEST_P(CudaAttentionTest, MixedBatchMatchesReference) {
  const auto [dtype, block_size, heads, kv_heads, head_dim] = GetParam();
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  // (context after this step, new tokens): seq_len 1, block boundaries +-1, decodes, prefill
  // chunks over a cached prefix, a long decode (split along the context) and a long chunk.
  const std::vector<std::pair<int, int>> seqs = {{1, 1},
                                                 {block_size - 1, 1},
                                                 {block_size, block_size},
                                                 {block_size + 1, 1},
                                                 {2 * block_size + 1, 3},
                                                 {70, 40},
                                                 {4100, 1},
                                                 {1500, 130}};
  testing::PagedBatch batch = testing::LayOutPagedBatch(seqs, block_size, 5, 7);
  const int64_t num_blocks = batch.num_blocks, max_blocks = batch.max_blocks;
  std::vector<int32_t>& tables = batch.block_tables;
  std::vector<int32_t>& query_start = batch.query_start_loc;
  std::vector<int32_t>& seq_lens = batch.seq_lens;
  CacheFixture c = MakeCache(*cuda, dtype, num_blocks, block_size, kv_heads, head_dim, 20);
  const int64_t t = query_start.back();
  const int64_t num_seqs = static_cast<int64_t>(seqs.size());
  std::vector<float> q = RandomFloats(t * heads * head_dim, 22);
  AttentionArgs host_args;
  host_args.query_start_loc = TensorView(query_start.data(), DType::kI32, {num_seqs + 1});
  host_args.seq_lens = TensorView(seq_lens.data(), DType::kI32, {num_seqs});
  host_args.block_tables = TensorView(tables.data(), DType::kI32, {num_seqs, max_blocks});
  host_args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  DeviceTensor q_dev = ToDevice(*cuda, q.data(), DType::kF32, {t, heads, head_dim});
  DeviceTensor starts = ToDevice(*cuda, query_start.data(), DType::kI32, {num_seqs + 1});
  DeviceTensor lens = ToDevice(*cuda, seq_lens.data(), DType::kI32, {num_seqs});
  // Full causal, then sliding windows (shorter than a block, a key tile, a partition) with the
  // blocks before every window gone from the tables: larger windows first, each forgets more.
  for (const int window : {0, 700, 64, 5, 1}) {
    if (window > 0) testing::ForgetBlocksBeforeWindows(batch, block_size, window);
    host_args.window = window;
    std::vector<float> expected(q.size(), NAN);
    CpuBackend().PagedAttention(TensorView(q.data(), DType::kF32, {t, heads, head_dim}), c.host,
                                host_args,
                                TensorView(expected.data(), DType::kF32, {t, heads, head_dim}));
    DeviceTensor tab = ToDevice(*cuda, tables.data(), DType::kI32, {num_seqs, max_blocks});
    // Without and with the host-side bounds (the model passes them; the backend can do without).
    for (bool bounds : {false, true}) {
      AttentionArgs args = host_args;
      args.query_start_loc = starts.view;
      args.seq_lens = lens.view;
      args.block_tables = tab.view;
      if (bounds) {
        args.max_query_len = 130;
        args.max_seq_len = 4100;
      }
      DeviceTensor out = Poisoned(*cuda, {t, heads, head_dim});
      cuda->PagedAttention(q_dev.view, c.device, args, out.view);
      const double tolerance = dtype == DType::kF32 ? 1e-4 : k16BitTolerance;
      EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, out), expected), tolerance)
          << "bounds=" << bounds << " window=" << window;
    }
  }
}

// The Loop model's gate mix on the device against the reference, f32 and bf16 gate weights.
TEST(CudaGatedMixTest, MatchesReference) {
  auto cuda = MakeCuda();
  SKIP_WITHOUT_GPU(cuda);
  const int64_t t = 37, heads = 40, head_dim = 128, n = t * heads * head_dim;
  const std::vector<float> q = RandomFloats(n, 1), global = RandomFloats(n, 2),
                           local = RandomFloats(n, 3), weight = RandomFloats(heads * head_dim, 4),
                           bias = RandomFloats(heads, 5);
  std::vector<uint16_t> weight_bf16(weight.size());
  for (size_t i = 0; i < weight.size(); ++i) weight_bf16[i] = FloatToBf16(weight[i]);
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    void* w_host = dtype == DType::kF32 ? static_cast<void*>(const_cast<float*>(weight.data()))
                                        : static_cast<void*>(weight_bf16.data());
    auto view = [](const std::vector<float>& v, std::initializer_list<int64_t> shape) {
      return TensorView(const_cast<float*>(v.data()), DType::kF32, shape);
    };
    std::vector<float> expected(static_cast<size_t>(n));
    CpuBackend().GatedAttentionMix(
        view(q, {t, heads, head_dim}), TensorView(w_host, dtype, {heads, head_dim}),
        view(bias, {heads}), view(global, {t, heads, head_dim}), view(local, {t, heads, head_dim}),
        TensorView(expected.data(), DType::kF32, {t, heads, head_dim}));
    DeviceTensor q_dev = ToDevice(*cuda, q.data(), DType::kF32, {t, heads, head_dim});
    DeviceTensor w_dev = ToDevice(*cuda, w_host, dtype, {heads, head_dim});
    DeviceTensor b_dev = ToDevice(*cuda, bias.data(), DType::kF32, {heads});
    DeviceTensor g_dev = ToDevice(*cuda, global.data(), DType::kF32, {t, heads, head_dim});
    DeviceTensor l_dev = ToDevice(*cuda, local.data(), DType::kF32, {t, heads, head_dim});
    // out aliases global, as the model calls it.
    cuda->GatedAttentionMix(q_dev.view, w_dev.view, b_dev.view, g_dev.view, l_dev.view, g_dev.view);
    EXPECT_LE(MaxRelativeError(ToHost<float>(*cuda, g_dev), expected), kF32Tolerance)
        << DTypeName(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttentionTest,
                         ::testing::Values(AttentionParam{DType::kF32, 16, 8, 8, 64},
                                           AttentionParam{DType::kBF16, 16, 8, 8, 64},
                                           AttentionParam{DType::kBF16, 8, 40, 8, 128},
                                           AttentionParam{DType::kBF16, 32, 8, 1, 128},
                                           AttentionParam{DType::kBF16, 16, 32, 8, 128},
                                           AttentionParam{DType::kF16, 16, 4, 4, 128},
                                           AttentionParam{DType::kF32, 32, 40, 8, 128}));

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
