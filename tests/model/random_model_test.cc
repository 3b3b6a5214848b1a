// Random-weight models (LlamaModel::CreateRandom, the GPU engine benchmark's 8B and 40B shapes):
// Backend::FillRandom writes exactly RandomUniform's values in the tensor's dtype, a random
// model runs and is deterministic in its seed, and the benchmark tool runs it end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/random_fill.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

TEST(FillRandomTest, WritesRandomUniformRoundedToTheDtype) {
  CpuBackend backend;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    // More than one host chunk (1 Mi elements) so that chunk offsets are exercised.
    const int64_t count = (int64_t{1} << 20) + 3;
    std::vector<uint8_t> bytes(static_cast<size_t>(count) * DTypeSize(dtype));
    backend.FillRandom(TensorView(bytes.data(), dtype, {count}), 42, 0.5f);
    double sum = 0;
    for (int64_t i : {int64_t{0}, int64_t{1}, count / 2, (int64_t{1} << 20), count - 1}) {
      std::vector<uint8_t> expected(DTypeSize(dtype));
      StoreFromFloat(expected.data(), dtype, 0, RandomUniform(42, static_cast<uint64_t>(i), 0.5f));
      EXPECT_EQ(LoadAsFloat(bytes.data(), dtype, i), LoadAsFloat(expected.data(), dtype, 0))
          << DTypeName(dtype) << " i=" << i;
    }
    for (int64_t i = 0; i < count; ++i) {
      const float v = LoadAsFloat(bytes.data(), dtype, i);
      ASSERT_LE(std::fabs(v), 0.5f);
      sum += v;
    }
    // Uniform in +-0.5: the mean of ~1M draws is within a few 1e-3 of 0.
    EXPECT_LT(std::fabs(sum / static_cast<double>(count)), 3e-3);
  }
  EXPECT_NE(RandomUniform(1, 0, 1.0f), RandomUniform(2, 0, 1.0f));
}

std::vector<float> LastLogits(LlamaModel& model, Backend& backend) {
  KvCacheConfig cache_config{4, 16, DType::kF32};
  auto cache = KvCache::Create(backend, model.config(), cache_config);
  CHECK(cache.ok());
  std::vector<int32_t> table = {0, 1, 2, 3};
  BatchBuilder builder(16);
  builder.AddSequence(std::vector<int32_t>{5, 17, 200, 3, 9}, 0, table, LogitsWanted::kLast);
  std::vector<float> logits;
  CHECK(model.Forward(builder.Build(), **cache, logits).ok());
  return logits;
}

TEST(RandomModelTest, RunsAndIsDeterministicInItsSeed) {
  ModelConfig c;
  c.architecture_name = "LlamaForCausalLM";
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.max_context_len = 64;
  c.qkv_bias = true;
  CpuBackend backend;
  ASSERT_OK_AND_ASSIGN(auto a, LlamaModel::CreateRandom(c, DType::kBF16, 7, backend));
  ASSERT_OK_AND_ASSIGN(auto b, LlamaModel::CreateRandom(c, DType::kBF16, 7, backend));
  ASSERT_OK_AND_ASSIGN(auto other, LlamaModel::CreateRandom(c, DType::kBF16, 8, backend));
  const std::vector<float> logits = LastLogits(*a, backend);
  ASSERT_EQ(logits.size(), 300u);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(LastLogits(*b, backend), logits);
  EXPECT_NE(LastLogits(*other, backend), logits);
}

TEST(RandomModelTest, BenchEngineRunsARandomShape) {
  const std::string command = std::string(IQUEST_BIN_DIR) +
                              "/iquest-bench-engine --shape=tiny --batches=1,2 "
                              "--decode-tokens=4 --prefill-tokens=16 --repeats=1 "
                              "--overhead-requests=0 --threads=1 > /dev/null";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  // The Loop shape: two passes, and a KV layer per pass (2 layers x 2 passes x K,V x 2 heads x
  // 16 dims x 4 bytes = 1024 bytes per token on the CPU's f32 cache).
  const std::string out = ::testing::TempDir() + "/bench_loop.txt";
  const std::string loop = std::string(IQUEST_BIN_DIR) +
                           "/iquest-bench-engine --shape=tiny-loop --batches=1 "
                           "--decode-tokens=4 --prefill-tokens=16 --repeats=1 "
                           "--overhead-requests=0 --threads=1 > " +
                           out;
  ASSERT_EQ(std::system(loop.c_str()), 0) << loop;
  std::ifstream file(out);
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("KV cache 1024 bytes/token (4 KV layers, f32)"), std::string::npos) << text;
  EXPECT_NE(text.find("(2 passes)"), std::string::npos) << text;
  // The real 40B-Loop shape, described without building it: 80 layers read twice
  // (2 x 80 x 487,587,840 weights) + gates (80 x 40 x 128) + lm_head (76800 x 5120), bf16; KV: K
  // and V of 160 layers x 8 heads x 128 dims, bf16.
  const std::string describe = std::string(IQUEST_BIN_DIR) +
                               "/iquest-bench-engine --shape=iquest-40b-loop --describe-shape > " +
                               out;
  ASSERT_EQ(std::system(describe.c_str()), 0) << describe;
  std::ifstream shape_file(out);
  const std::string shape((std::istreambuf_iterator<char>(shape_file)),
                          std::istreambuf_iterator<char>());
  EXPECT_NE(shape.find("80 layers x 2 passes, weights 156815360000 bytes/token (bf16, all "
                       "passes), KV cache 655360 bytes/token (bf16, 160 KV layers)"),
            std::string::npos)
      << shape;
  const std::string bad = std::string(IQUEST_BIN_DIR) +
                          "/iquest-bench-engine --shape=70b --overhead-requests=0 2> /dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace iquest
