// The CUDA backend's KV-cache ops, paged attention and the Loop gate mix against the CPU
// reference ops, through the Backend interface: block boundaries +-1, seq_len 1, GQA ratios
// 1/5/8, long contexts that split into partitions, sliding windows with the blocks before them
// gone, outputs poisoned before each run. Labelled `gpu` (part of cuda_backend_test): every test
// skips where there is no device. Tolerances: tests/testing/cuda_backend_fixture.h.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/cuda_backend_fixture.h"
#include "tests/testing/paged_batch.h"
#include "tests/testing/random_tensor.h"

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

}  // namespace
}  // namespace iquest
