// The Loop architecture (IQuestLoopCoderForCausalLM) through the engine: greedy outputs of a
// batch are those of each request decoded alone through the model (testing::Greedy), and stay
// the same with the prefix cache on, with chunked prefill, with preemption by recompute and
// with n = 2 and with speculative decoding; every block of both pools comes back. The local
// pool's use is flat in the context length. The model has a 4-token local window (shorter than
// every prompt) and gate biases 0, so both branches and the window decide the tokens. The forward
// pass itself is checked against the float64 NumPy reference in forward_parity_test.py.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include "engine/engine.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/greedy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

using Outputs = std::map<std::string, std::map<int32_t, std::vector<int32_t>>>;

class LoopEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = new CpuBackend();
    TinyModelOptions options;
    options.arch = "loop";
    options.loop_window = 4;
    options.vocab_size = 256;
    options.max_position_embeddings = 256;
    dir_ = new testing::TempDir();
    ASSERT_OK(WriteTinyModel(dir_->path(), options));
    ASSERT_OK_AND_ASSIGN(auto model, LlamaModel::Load(dir_->path(), *backend_));
    model_ = model.release();
    ASSERT_EQ(model_->config().loop_num, 2);
    ASSERT_EQ(model_->config().num_kv_layers(), 4);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
    delete backend_;
  }

  // 12 greedy requests sharing an 8-token prefix (the prefix cache hits), a few with n = 2.
  static std::vector<GenerationRequest> Requests() {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 12; ++i) {
      GenerationRequest r;
      r.request_id = "r" + std::to_string(i);
      for (int j = 0; j < 8; ++j) r.prompt_token_ids.push_back(10 + j);
      for (int j = 0; j < 3 + (i * 7) % 19; ++j) {
        r.prompt_token_ids.push_back(30 + (i * 31 + j * 17) % 220);
      }
      r.sampling.max_tokens = 10 + i % 7;
      r.sampling.ignore_eos = true;
      r.sampling.temperature = 0.0f;
      r.sampling.n = i % 4 == 0 ? 2 : 1;
      requests.push_back(r);
    }
    return requests;
  }

  // The first request alone (its prefix gets cached), then the rest at once; checks that every
  // block is back afterwards.
  static Outputs Run(const EngineConfig& config, EngineStats* stats = nullptr) {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, config);
    EXPECT_OK(engine);
    if (!engine.ok()) return {};
    const std::vector<GenerationRequest> requests = Requests();
    std::map<std::string, std::shared_ptr<CollectingSink>> sinks;
    for (const GenerationRequest& r : requests) {
      sinks[r.request_id] = std::make_shared<CollectingSink>();
      EXPECT_OK((*engine)->Submit(r, sinks[r.request_id]));
      if (&r == &requests.front()) sinks[r.request_id]->Wait();
    }
    Outputs out;
    for (auto& [id, sink] : sinks) {
      sink->Wait();
      out[id] = sink->tokens_;
    }
    const EngineStats s = (*engine)->Stats();
    EXPECT_EQ(s.num_used_blocks, 0);
    EXPECT_GT(s.num_local_blocks, 0);  // The local pool is on.
    EXPECT_EQ(s.num_used_local_blocks, 0);
    if (stats != nullptr) *stats = s;
    return out;
  }

  static testing::TempDir* dir_;
  static CpuBackend* backend_;
  static LlamaModel* model_;
};

testing::TempDir* LoopEngineTest::dir_ = nullptr;
CpuBackend* LoopEngineTest::backend_ = nullptr;
LlamaModel* LoopEngineTest::model_ = nullptr;

TEST_F(LoopEngineTest, BatchedOutputsAreEachRequestAlone) {
  EngineConfig config = TinyEngineConfig(256, 512);
  config.scheduler.enable_prefix_caching = false;
  const Outputs batched = Run(config);
  for (const GenerationRequest& r : Requests()) {
    const std::vector<int32_t> alone =
        testing::Greedy(dir_->path(), *backend_, r.prompt_token_ids, r.sampling.max_tokens);
    for (const auto& [sample, tokens] : batched.at(r.request_id)) {
      EXPECT_EQ(tokens, alone) << r.request_id << " sample " << sample;
    }
    EXPECT_EQ(static_cast<int32_t>(batched.at(r.request_id).size()), r.sampling.n);
  }
}

TEST_F(LoopEngineTest, PrefixCacheChunkingAndPreemptionChangeNothing) {
  EngineConfig base = TinyEngineConfig(256, 512);
  base.scheduler.enable_prefix_caching = false;
  const Outputs expected = Run(base);

  EngineConfig cached = TinyEngineConfig(256, 512);
  EngineStats stats;
  EXPECT_EQ(Run(cached, &stats), expected) << "prefix cache on";
  EXPECT_GT(stats.counters.prefix_cache_hits, 0);

  EngineConfig chunked = TinyEngineConfig(256, 5);  // 5-token steps: every prompt is chunked.
  EXPECT_EQ(Run(chunked), expected) << "chunked prefill";

  EngineConfig tight = TinyEngineConfig(24, 64);  // 96 slots for 16 sequences: preemption.
  EXPECT_EQ(Run(tight, &stats), expected) << "preemption";
  EXPECT_GT(stats.counters.num_preemptions, 0);

  // The smallest local pool the engine takes for 16-token steps: ceil((3 + 16) / 4) + 1 = 6
  // blocks. A prefilling request needs up to 6 and a decoding one 2, so any two requests that
  // overlap make the local pool (not the global one) preempt, whatever the timing.
  EngineConfig local_tight = TinyEngineConfig(256, 16);
  local_tight.kv_cache.num_local_blocks = 6;
  EXPECT_EQ(Run(local_tight, &stats), expected) << "local pool preemption";
  EXPECT_GT(stats.counters.num_preemptions, 0);

  EngineConfig speculating = TinyEngineConfig(256, 512);
  speculating.speculation.method = SpeculationMethod::kNgram;
  speculating.speculation.num_speculative_tokens = 3;
  speculating.speculation.ngram_min = 1;
  speculating.speculation.adaptive = false;
  EXPECT_EQ(Run(speculating, &stats), expected) << "speculation";
  EXPECT_GT(stats.spec_decode.num_draft_tokens, 0);
}

// The local branch's memory does not grow with the context: one request with a 256- and a
// 4,096-token prompt holds at most the local blocks of its 8-token window and a 256-token chunk,
// while its global blocks grow 16-fold.
TEST(LoopMemoryTest, LocalPoolUseIsFlatFrom256To4096Tokens) {
  CpuBackend backend;
  testing::TempDir dir;
  TinyModelOptions options;
  options.arch = "loop";
  options.loop_window = 8;
  options.max_position_embeddings = 8192;
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  ASSERT_OK_AND_ASSIGN(auto model, LlamaModel::Load(dir.path(), backend));
  std::map<int, std::pair<int64_t, int64_t>> peaks;  // prompt -> (local peak, global blocks)
  for (const int prompt_len : {256, 4096}) {
    EngineConfig config = TinyEngineConfig(300, 256);
    config.kv_cache.block_size = 16;
    config.scheduler.max_model_len = 4200;
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model, config));
    GenerationRequest r;
    r.request_id = "long";
    for (int i = 0; i < prompt_len; ++i) r.prompt_token_ids.push_back(3 + (i * 7) % 250);
    r.sampling.max_tokens = 4;
    r.sampling.ignore_eos = true;
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_OK(engine->Submit(r, sink));
    sink->Wait();
    ASSERT_EQ(sink->NumTokens(), 4u);
    const EngineStats stats = engine->Stats();
    EXPECT_EQ(stats.num_used_local_blocks, 0);
    peaks[prompt_len] = {stats.max_used_local_blocks, (prompt_len + 4 + 15) / 16};
  }
  std::printf("local blocks at most: %ld (256 tokens), %ld (4096 tokens); global: %ld, %ld\n",
              static_cast<long>(peaks[256].first), static_cast<long>(peaks[4096].first),
              static_cast<long>(peaks[256].second), static_cast<long>(peaks[4096].second));
  // A 256-token chunk after a 7-token window: ceil((7 + 256) / 16) + 1 = 18 blocks at most,
  // whatever the context (the first chunk has no window before it: 16).
  EXPECT_LE(peaks[256].first, 18);
  EXPECT_LE(peaks[4096].first, 18);
  EXPECT_GE(peaks[256].first, 16);
  EXPECT_GE(peaks[4096].second, 16 * peaks[256].second - 16);
}

}  // namespace
}  // namespace iquest
