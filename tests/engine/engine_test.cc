// The engine on the real tiny model: greedy outputs are the same alone, batched, with chunked
// prefill and under preemption; seeded sampling is batch-independent; prefix-cache hits are
// reported and change nothing; cancellation and deadlines free every block; n > 1, prompt
// logprobs, stop strings and shutdown.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    TinyModelOptions options;
    options.vocab_size = 256;
    options.max_position_embeddings = 256;
    ASSERT_OK(WriteTinyModel(dir_->path(), options));
    backend_ = new CpuBackend();
    auto model = LlamaModel::Load(dir_->path(), *backend_);
    ASSERT_OK(model);
    model_ = model->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
    delete dir_;
  }

  static EngineConfig Config(int64_t num_blocks = 256, int64_t budget = 512) {
    return TinyEngineConfig(num_blocks, budget);
  }

  static GenerationRequest Greedy(const std::string& id, int prompt_len, int max_tokens,
                                  int salt = 0) {
    GenerationRequest r;
    r.request_id = id;
    for (int i = 0; i < prompt_len; ++i)
      r.prompt_token_ids.push_back((i * 37 + salt * 11 + 3) % 256);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }

  // Submits all `requests` at once and waits for them; returns sample 0's tokens per request.
  static std::map<std::string, std::vector<int32_t>> RunAll(
      Engine& engine, const std::vector<GenerationRequest>& requests,
      std::map<std::string, std::shared_ptr<CollectingSink>>* sinks_out = nullptr) {
    std::map<std::string, std::shared_ptr<CollectingSink>> sinks;
    for (const GenerationRequest& r : requests) {
      sinks[r.request_id] = std::make_shared<CollectingSink>();
      EXPECT_OK(engine.Submit(r, sinks[r.request_id]));
    }
    std::map<std::string, std::vector<int32_t>> out;
    for (auto& [id, sink] : sinks) {
      sink->Wait();
      out[id] = sink->tokens_[0];
    }
    if (sinks_out != nullptr) *sinks_out = sinks;
    return out;
  }

  static std::vector<GenerationRequest> SixteenRequests() {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 16; ++i) {
      requests.push_back(Greedy("r" + std::to_string(i), 1 + (i * 7) % 40, 12, i));
    }
    return requests;
  }

  static testing::TempDir* dir_;
  static CpuBackend* backend_;
  static LlamaModel* model_;
};

testing::TempDir* EngineTest::dir_ = nullptr;
CpuBackend* EngineTest::backend_ = nullptr;
LlamaModel* EngineTest::model_ = nullptr;

TEST_F(EngineTest, GreedyOutputsAreTheSameAloneBatchedChunkedAndPreempted) {
  const std::vector<GenerationRequest> requests = SixteenRequests();
  std::map<std::string, std::vector<int32_t>> alone;
  {
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
    for (const GenerationRequest& r : requests)
      alone[r.request_id] = RunAll(*engine, {r})[r.request_id];
  }
  for (const auto& [id, tokens] : alone) ASSERT_EQ(tokens.size(), 12u) << id;
  {
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
    EXPECT_EQ(RunAll(*engine, requests), alone) << "batched";
  }
  {
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config(256, /*budget=*/8)));
    EXPECT_EQ(RunAll(*engine, requests), alone) << "max_num_batched_tokens 8";
  }
  {
    // 14 blocks of 4 tokens: the longest request (40 + 12) fits alone, the batch does not.
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config(/*num_blocks=*/14)));
    EXPECT_EQ(RunAll(*engine, requests), alone) << "with preemption";
    EXPECT_GT(engine->Stats().counters.num_preemptions, 0);
    EXPECT_EQ(engine->Stats().num_used_blocks, 0);
  }
}

TEST_F(EngineTest, SeededSamplingIsTheSameAloneAndInABatch) {
  auto sampled = [](const std::string& id, uint64_t seed) {
    GenerationRequest r = Greedy(id, 9, 16, 3);
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = seed;
    return r;
  };
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  const auto alone = RunAll(*engine, {sampled("target", 7)});
  std::vector<GenerationRequest> batch = {sampled("target", 7)};
  for (int i = 0; i < 7; ++i) batch.push_back(sampled("other" + std::to_string(i), 100 + i));
  const auto together = RunAll(*engine, batch);
  EXPECT_EQ(together.at("target"), alone.at("target"));
  EXPECT_NE(together.at("other0"), together.at("other1"));  // Different seeds do differ.
}

TEST_F(EngineTest, PrefixCacheHitsAreReportedAndChangeNoOutput) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r = Greedy("p" + std::to_string(i), 100, 8);  // Same 100-token prefix...
    r.prompt_token_ids.push_back(200 + i);                          // ...different last token.
    requests.push_back(r);
  }
  EngineConfig no_cache_config = Config();
  no_cache_config.scheduler.enable_prefix_caching = false;
  ASSERT_OK_AND_ASSIGN(auto no_cache, Engine::Create(*model_, no_cache_config));
  const auto expected = RunAll(*no_cache, requests);
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  std::map<std::string, std::vector<int32_t>> got = RunAll(*engine, {requests[0]});
  std::map<std::string, std::shared_ptr<CollectingSink>> sinks;
  const auto rest = RunAll(*engine, {requests[1], requests[2], requests[3]}, &sinks);
  got.insert(rest.begin(), rest.end());
  EXPECT_EQ(got, expected);
  for (const auto& [id, sink] : sinks) EXPECT_EQ(sink->last_.usage.cached_tokens, 100) << id;
  EXPECT_GE(engine->Stats().counters.prefix_cache_hits, 300);
}

TEST_F(EngineTest, RequestIdsAreScopedToTheirOwner) {
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  GenerationRequest a = Greedy("same", 20, 100);
  a.owner = "tenant:a";
  GenerationRequest b = a;
  b.owner = "tenant:b";
  auto sink_a = std::make_shared<CollectingSink>();
  auto sink_b = std::make_shared<CollectingSink>();
  ASSERT_OK(engine->Submit(a, sink_a));
  ASSERT_OK(engine->Submit(b, sink_b));  // Same id, another owner: its own request.
  EXPECT_EQ(engine->Submit(a, std::make_shared<CollectingSink>()).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(engine->Cancel("tenant:c", "same"));
  EXPECT_TRUE(engine->Cancel("tenant:b", "same"));
  sink_b->Wait();
  sink_a->Wait();
  EXPECT_EQ(sink_b->reasons_[0], FinishReason::kCancelled);
  EXPECT_EQ(sink_a->reasons_[0], FinishReason::kLength);
  EXPECT_EQ(sink_a->NumTokens(), 100u);
}

TEST_F(EngineTest, CancellationAndDeadlinesFreeEveryBlock) {
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  auto cancelled = std::make_shared<CollectingSink>();
  ASSERT_OK(engine->Submit(Greedy("long", 20, 200), cancelled));
  while (cancelled->NumTokens() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(engine->Cancel("someone else", "long"));  // Not theirs: nothing happens.
  EXPECT_TRUE(engine->Cancel("", "long"));
  cancelled->Wait();
  EXPECT_EQ(cancelled->reasons_[0], FinishReason::kCancelled);
  auto expired = std::make_shared<CollectingSink>();
  GenerationRequest r = Greedy("deadline", 20, 200);
  r.deadline = Clock::now() + std::chrono::milliseconds(30);
  ASSERT_OK(engine->Submit(r, expired));
  expired->Wait();
  EXPECT_EQ(expired->reasons_[0], FinishReason::kDeadlineExceeded);
  EXPECT_LT(expired->NumTokens(), 200u);
  EXPECT_EQ(engine->Stats().num_used_blocks, 0);
  EXPECT_EQ(engine->Stats().num_running, 0);
}

TEST_F(EngineTest, NSamplesShareThePromptAndFinishTogether) {
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  GenerationRequest r = Greedy("n3", 10, 6);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 5;
  r.sampling.n = 3;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_OK(engine->Submit(r, sink));
  sink->Wait();
  ASSERT_EQ(sink->tokens_.size(), 3u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(sink->tokens_[k].size(), 6u) << k;
  EXPECT_NE(sink->tokens_[0], sink->tokens_[1]);
  EXPECT_EQ(sink->last_.usage.completion_tokens, 18);
  EXPECT_EQ(engine->Stats().num_used_blocks, 0);
}

TEST_F(EngineTest, GreedySamplesOfAForkEqualTheSingleSample) {
  // With temperature 0 every sample of n must equal the n = 1 output: a copy-on-write that lost
  // or mixed up KV data would make them diverge.
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  const auto single = RunAll(*engine, {Greedy("one", 10, 12)}).at("one");
  GenerationRequest r = Greedy("two", 10, 12);
  r.sampling.n = 2;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_OK(engine->Submit(r, sink));
  sink->Wait();
  EXPECT_EQ(sink->tokens_[0], single);
  EXPECT_EQ(sink->tokens_[1], single);
}

TEST_F(EngineTest, ShutdownLetsRunningRequestsFinishWithinTheDrain) {
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config()));
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_OK(engine->Submit(Greedy("d" + std::to_string(i), 8, 20, i), sinks.back()));
  }
  engine->Shutdown(absl::Seconds(30));
  for (const auto& sink : sinks) {
    sink->Wait();
    EXPECT_EQ(sink->reasons_[0], FinishReason::kLength);
    EXPECT_EQ(sink->tokens_[0].size(), 20u);
  }
}

TEST_F(EngineTest, PromptLogprobsMatchTheModel) {
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, Config(256, /*budget=*/4)));
  GenerationRequest r = Greedy("lp", 11, 1);
  r.sampling.prompt_logprobs = 3;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_OK(engine->Submit(r, sink));
  sink->Wait();
  // Expected: the model's own logits over the whole prompt in one chunk.
  KvCacheConfig cache_config{4, 4, DType::kF32};
  ASSERT_OK_AND_ASSIGN(auto cache, KvCache::Create(*backend_, model_->config(), cache_config));
  BatchBuilder builder(4);
  builder.AddSequence(r.prompt_token_ids, 0, std::vector<int32_t>{0, 1, 2}, LogitsWanted::kAll);
  std::vector<float> logits;
  ASSERT_OK(model_->Forward(builder.Build(), *cache, logits));
  ASSERT_EQ(sink->prompt_logprobs_.size(), 10u);  // Positions 1..10, each once despite chunks.
  for (const PromptLogprob& p : sink->prompt_logprobs_) {
    const std::span<const float> row(logits.data() + (p.position - 1) * 256, 256);
    const PositionLogprobs expected = ComputeLogprobs(row, r.prompt_token_ids[p.position], 3);
    EXPECT_NEAR(p.logprobs.logprob, expected.logprob, 1e-6) << p.position;
    ASSERT_EQ(p.logprobs.top.size(), 3u);
    EXPECT_EQ(p.logprobs.top[0].token, expected.top[0].token);
  }
}

// Token t reads as "<t>", so stop strings can be tested without a real tokenizer.
class BracketStream : public TextStream {
 public:
  std::string Push(int32_t token) override { return "<" + std::to_string(token) + ">"; }
  std::string Flush() override { return ""; }
};

TEST_F(EngineTest, StopStringsEndTheRequestAndAreNotEmitted) {
  EngineConfig config = Config();
  config.text_stream_factory = [](const SamplingParams&) {
    return std::make_unique<BracketStream>();
  };
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, config));
  const auto reference = RunAll(*engine, {Greedy("ref", 5, 10)}).at("ref");
  GenerationRequest r = Greedy("stop", 5, 10);
  const std::string stop = "<" + std::to_string(reference[3]) + ">";
  r.sampling.stop_strings = {stop};
  std::map<std::string, std::shared_ptr<CollectingSink>> sinks;
  RunAll(*engine, {r}, &sinks);
  const auto& sink = sinks.at("stop");
  EXPECT_EQ(sink->reasons_[0], FinishReason::kStopString);
  EXPECT_EQ(sink->text_[0].find(stop), std::string::npos) << sink->text_[0];
  std::string expected_text;
  for (size_t i = 0; i < reference.size() && "<" + std::to_string(reference[i]) + ">" != stop;
       ++i) {
    expected_text += "<" + std::to_string(reference[i]) + ">";
  }
  EXPECT_EQ(sink->text_[0], expected_text);
}

TEST_F(EngineTest, SubmitRejectsBadRequestsAndShutdownDrains) {
  EngineConfig config = Config();
  config.scheduler.max_waiting_requests = 2;
  config.scheduler.max_num_seqs = 1;
  ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*model_, config));
  auto sink = std::make_shared<CollectingSink>();
  GenerationRequest bad = Greedy("bad", 3, 4);
  bad.prompt_token_ids[1] = 256;
  EXPECT_STATUS_CODE(engine->Submit(bad, sink), absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(engine->Submit(Greedy("long", 250, 10), sink),
                     absl::StatusCode::kInvalidArgument);
  GenerationRequest stops = Greedy("stops", 3, 4);
  stops.sampling.stop_strings = {"x"};
  EXPECT_STATUS_CODE(engine->Submit(stops, sink), absl::StatusCode::kInvalidArgument);
  GenerationRequest late = Greedy("late", 3, 4);
  late.deadline = Clock::now() - std::chrono::milliseconds(1);
  EXPECT_STATUS_CODE(engine->Submit(late, sink), absl::StatusCode::kDeadlineExceeded);
  // Fill the queue: one running plus two waiting; the next is refused.
  // The engine takes requests off the queue as they come, so which ones are refused depends on
  // timing: only the accepted ones' sinks are waited for.
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  int accepted = 0, exhausted = 0;
  for (int i = 0; i < 6; ++i) {
    auto s = std::make_shared<CollectingSink>();
    const absl::Status status = engine->Submit(Greedy("q" + std::to_string(i), 4, 100), s);
    if (status.ok()) {
      ++accepted;
      sinks.push_back(s);
    }
    if (status.code() == absl::StatusCode::kResourceExhausted) ++exhausted;
  }
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(accepted + exhausted, 6);
  EXPECT_STATUS_CODE(engine->Submit(Greedy("q0", 4, 4), sink), absl::StatusCode::kAlreadyExists);
  engine->Shutdown(absl::ZeroDuration());  // No drain time: everything is cancelled.
  for (const auto& s : sinks) s->Wait();
  EXPECT_STATUS_CODE(engine->Submit(Greedy("after", 3, 4), sink), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->Stats().num_used_blocks, 0);
}

}  // namespace
}  // namespace iquest
