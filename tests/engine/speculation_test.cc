// Speculative decoding end to end on the tiny models: outputs are the same with and without it
// (greedy, seeded sampling, penalties), under chunked prefill, preemption, n = 2 and the prefix
// cache, for prompt lookup and for draft models; every block of both pools comes back after
// cancels and deadlines; the draft proposer and its pool. The verification rule's distribution,
// prompt lookup and the adaptive policy on their own: speculator_test.cc.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>

#include "engine/engine.h"
#include "engine/speculation/draft_proposer.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/greedy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

using Outputs = std::map<std::string, std::map<int32_t, std::vector<int32_t>>>;

class SpeculationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = new CpuBackend();
    TinyModelOptions options;
    options.vocab_size = 256;
    options.max_position_embeddings = 256;
    target_dir_ = new testing::TempDir();
    ASSERT_OK(WriteTinyModel(target_dir_->path(), options));
    TinyModelOptions other = options;  // Same vocabulary, another (smaller) model.
    other.hidden_size = 32;
    other.num_layers = 1;
    other.seed = 7;
    other_dir_ = new testing::TempDir();
    ASSERT_OK(WriteTinyModel(other_dir_->path(), other));
    ASSERT_OK_AND_ASSIGN(auto target, LlamaModel::Load(target_dir_->path(), *backend_));
    target_ = target.release();
    ASSERT_OK_AND_ASSIGN(auto same, LlamaModel::Load(target_dir_->path(), *backend_));
    same_ = same.release();
    ASSERT_OK_AND_ASSIGN(auto draft, LlamaModel::Load(other_dir_->path(), *backend_));
    other_ = draft.release();
  }
  static void TearDownTestSuite() {
    delete target_;
    delete same_;
    delete other_;
    delete target_dir_;
    delete other_dir_;
    delete backend_;
  }

  static EngineConfig Config(SpeculationMethod method, LlamaModel* draft = nullptr,
                             int64_t num_blocks = 256, int64_t budget = 512) {
    EngineConfig config = TinyEngineConfig(num_blocks, budget);
    config.speculation.method = method;
    config.speculation.num_speculative_tokens = 4;
    config.speculation.ngram_min = 1;
    config.speculation.adaptive = false;  // Draft all the time: the most verification.
    config.draft_model = draft;
    config.draft_kv_cache.num_blocks = 512;
    config.draft_kv_cache.block_size = 4;
    return config;
  }

  // Prompts that repeat a short motif (so prompt lookup finds matches), with a shared prefix
  // across requests (so the prefix cache hits) and some n = 2.
  static std::vector<GenerationRequest> Requests(bool sampled) {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 16; ++i) {
      GenerationRequest r;
      r.request_id = "r" + std::to_string(i);
      for (int j = 0; j < 8; ++j) r.prompt_token_ids.push_back(10 + j);  // Shared prefix.
      const int motif = 3 + i % 4;
      for (int j = 0; j < 6 + (i * 5) % 23; ++j)
        r.prompt_token_ids.push_back(40 + (i * 13 + j % motif) % 200);
      r.sampling.max_tokens = 24 + i % 9;
      r.sampling.ignore_eos = true;
      r.sampling.n = i % 5 == 0 ? 2 : 1;
      if (sampled) {
        r.sampling.temperature = 0.8f;
        r.sampling.top_p = 0.95f;
        r.sampling.seed = 1000 + i;
        if (i % 3 == 0) r.sampling.repetition_penalty = 1.3f;  // Host path, with drafts pending.
        if (i % 4 == 0) r.sampling.presence_penalty = 0.5f;
      } else {
        r.sampling.temperature = 0.0f;
      }
      requests.push_back(r);
    }
    return requests;
  }

  // The first request alone (its prefix blocks get cached), then the rest at once.
  static Outputs RunAll(Engine& engine, const std::vector<GenerationRequest>& requests) {
    std::map<std::string, std::shared_ptr<CollectingSink>> sinks;
    for (const GenerationRequest& r : requests) {
      sinks[r.request_id] = std::make_shared<CollectingSink>();
      EXPECT_OK(engine.Submit(r, sinks[r.request_id]));
      if (&r == &requests.front()) sinks[r.request_id]->Wait();
    }
    Outputs out;
    for (auto& [id, sink] : sinks) {
      sink->Wait();
      out[id] = sink->tokens_;
    }
    return out;
  }

  // The outputs of `requests` under `config` (checked complete), and the engine's stats.
  static Outputs Run(const EngineConfig& config, const std::vector<GenerationRequest>& requests,
                     EngineStats* stats = nullptr) {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*target_, config);
    EXPECT_OK(engine);
    if (!engine.ok()) return {};
    Outputs out = RunAll(**engine, requests);
    const EngineStats s = (*engine)->Stats();
    EXPECT_EQ(s.num_used_blocks, 0);
    EXPECT_EQ(s.draft_num_used_blocks, 0);
    if (stats != nullptr) *stats = s;
    return out;
  }

  static testing::TempDir* target_dir_;
  static testing::TempDir* other_dir_;
  static CpuBackend* backend_;
  static LlamaModel* target_;
  static LlamaModel* same_;   // The target's weights, loaded again: a draft that agrees.
  static LlamaModel* other_;  // Another model of the same vocabulary: a draft that mostly errs.
};

testing::TempDir* SpeculationTest::target_dir_ = nullptr;
testing::TempDir* SpeculationTest::other_dir_ = nullptr;
CpuBackend* SpeculationTest::backend_ = nullptr;
LlamaModel* SpeculationTest::target_ = nullptr;
LlamaModel* SpeculationTest::same_ = nullptr;
LlamaModel* SpeculationTest::other_ = nullptr;

void ExpectComplete(const Outputs& outputs, const std::vector<GenerationRequest>& requests) {
  for (const GenerationRequest& r : requests) {
    const auto& samples = outputs.at(r.request_id);
    ASSERT_EQ(static_cast<int32_t>(samples.size()), r.sampling.n) << r.request_id;
    for (const auto& [k, tokens] : samples)
      EXPECT_EQ(static_cast<int32_t>(tokens.size()), r.sampling.max_tokens) << r.request_id;
  }
}

TEST_F(SpeculationTest, GreedyOutputsAreTheSameWithAndWithoutSpeculation) {
  const std::vector<GenerationRequest> requests = Requests(/*sampled=*/false);
  const Outputs expected = Run(Config(SpeculationMethod::kNone), requests);
  ExpectComplete(expected, requests);
  struct Case {
    const char* name;
    SpeculationMethod method;
    LlamaModel* draft;
    int64_t num_blocks;
    int64_t budget;
  };
  // 40 blocks of 4 tokens: the batch does not fit and preempts; a budget of 24 chunks prompts.
  for (const Case& c :
       {Case{"ngram", SpeculationMethod::kNgram, nullptr, 256, 512},
        Case{"ngram, chunked, preempted", SpeculationMethod::kNgram, nullptr, 40, 24},
        Case{"draft = target", SpeculationMethod::kDraft, same_, 256, 512},
        Case{"draft = target, chunked, preempted", SpeculationMethod::kDraft, same_, 40, 24},
        Case{"other draft", SpeculationMethod::kDraft, other_, 40, 24}}) {
    SCOPED_TRACE(c.name);
    EngineStats stats;
    EXPECT_EQ(Run(Config(c.method, c.draft, c.num_blocks, c.budget), requests, &stats), expected);
    EXPECT_GT(stats.spec_decode.num_draft_tokens, 0);
    // The unrelated draft is all rejections (what it checks); the others accept some.
    if (c.draft != other_) {
      EXPECT_GT(stats.spec_decode.num_accepted_tokens, 0);
    }
    EXPECT_GT(stats.counters.prefix_cache_hits, 0);
    if (c.num_blocks == 40) {
      EXPECT_GT(stats.counters.num_preemptions, 0);
    }
    if (c.draft == same_) {
      // The target's own greedy guesses: nearly all accepted (ties may round either way).
      EXPECT_GT(stats.spec_decode.num_accepted_tokens * 10, stats.spec_decode.num_draft_tokens * 9);
    }
    std::cout << c.name << ": " << stats.spec_decode.num_accepted_tokens << " of "
              << stats.spec_decode.num_draft_tokens << " drafts accepted\n";
  }
}

TEST_F(SpeculationTest, SeededSamplingIsTheSameWithAndWithoutSpeculation) {
  // Each row draws with the random number of its own position, and the penalties count the
  // drafts before it: the same tokens, not just the same distribution.
  const std::vector<GenerationRequest> requests = Requests(/*sampled=*/true);
  const Outputs expected = Run(Config(SpeculationMethod::kNone), requests);
  ExpectComplete(expected, requests);
  EngineStats stats;
  EXPECT_EQ(Run(Config(SpeculationMethod::kDraft, same_, 40, 24), requests, &stats), expected);
  EXPECT_GT(stats.spec_decode.num_accepted_tokens, 0);
  EXPECT_EQ(Run(Config(SpeculationMethod::kNgram), requests, &stats), expected);
  EXPECT_EQ(Run(Config(SpeculationMethod::kNgram, nullptr, 256, 512), requests), expected);
}

TEST_F(SpeculationTest, StopTokensAndStopLimitsEndInsideAcceptedDrafts) {
  // EOS not ignored and max_tokens small: the step's accepted drafts run past the end, and are
  // cut exactly where the request without speculation ends.
  std::vector<GenerationRequest> requests = Requests(/*sampled=*/false);
  for (GenerationRequest& r : requests) {
    r.sampling.ignore_eos = false;
    r.sampling.stop_token_ids = {r.prompt_token_ids.back()};
    r.sampling.max_tokens = 5 + static_cast<int32_t>(r.prompt_token_ids.size()) % 7;
  }
  const Outputs expected = Run(Config(SpeculationMethod::kNone), requests);
  EXPECT_EQ(Run(Config(SpeculationMethod::kDraft, same_), requests), expected);
  EXPECT_EQ(Run(Config(SpeculationMethod::kNgram), requests), expected);
}

TEST_F(SpeculationTest, PerRequestSwitchTurnsItOff) {
  std::vector<GenerationRequest> requests = Requests(/*sampled=*/false);
  for (GenerationRequest& r : requests) r.sampling.speculation = false;
  EngineStats stats;
  const Outputs got = Run(Config(SpeculationMethod::kDraft, same_), requests, &stats);
  ExpectComplete(got, requests);
  EXPECT_EQ(stats.spec_decode.num_draft_tokens, 0);
}

TEST_F(SpeculationTest, FiveHundredRequestsWithCancelsAndDeadlinesGiveEveryBlockBack) {
  for (SpeculationMethod method : {SpeculationMethod::kNgram, SpeculationMethod::kDraft}) {
    EngineConfig config = Config(method, other_, /*num_blocks=*/96, /*budget=*/64);
    config.draft_kv_cache.num_blocks = 64;  // Small: shadows are evicted and rebuilt.
    config.speculation.adaptive = true;
    ASSERT_OK_AND_ASSIGN(auto engine, Engine::Create(*target_, config));
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    for (int i = 0; i < 500; ++i) {
      GenerationRequest r = Requests(i % 2 == 1)[static_cast<size_t>(i % 16)];
      r.request_id = "q" + std::to_string(i);
      r.sampling.max_tokens = 8 + i % 13;
      if (i % 7 == 0) r.deadline = Clock::now() + std::chrono::milliseconds(1 + i % 5);
      sinks.push_back(std::make_shared<CollectingSink>());
      const absl::Status submitted = engine->Submit(r, sinks.back());
      if (submitted.code() == absl::StatusCode::kDeadlineExceeded) {
        sinks.pop_back();  // It passed already: refused, and nothing to wait for.
        continue;
      }
      ASSERT_OK(submitted);
      if (i % 5 == 0) engine->Cancel("", "q" + std::to_string(i / 2));
      if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (auto& sink : sinks) sink->Wait();
    const EngineStats stats = engine->Stats();
    EXPECT_EQ(stats.num_used_blocks, 0) << SpeculationMethodName(method);
    EXPECT_EQ(stats.draft_num_used_blocks, 0) << SpeculationMethodName(method);
    EXPECT_EQ(stats.num_running + stats.num_waiting, 0);
    EXPECT_GT(stats.spec_decode.num_draft_tokens, 0);
  }
}

TEST_F(SpeculationTest, DraftProposerGuessesGreedilyAndKeepsItsPoolExact) {
  KvCacheConfig kv;
  kv.num_blocks = 8;  // 32 tokens.
  kv.block_size = 4;
  SchedulerConfig scheduler;
  scheduler.max_model_len = 256;
  ASSERT_OK_AND_ASSIGN(auto proposer, DraftProposer::Create(*target_, *other_, kv, scheduler));
  auto request = [](uint64_t id, int length) {
    Request r;
    r.id = id;
    for (int i = 0; i < length; ++i)
      r.token_ids.push_back(5 + (i * 7 + static_cast<int>(id)) % 200);
    r.prompt_len = length;
    return r;
  };
  Request a = request(1, 10);
  ASSERT_OK_AND_ASSIGN(auto drafts, proposer->Propose(std::vector<DraftQuery>{{&a, 3}}));
  // The draft model's own greedy continuation.
  const std::vector<int32_t> expected =
      testing::Greedy(other_dir_->path(), *backend_, a.token_ids, 3);
  EXPECT_EQ(drafts[0], expected);
  EXPECT_EQ(proposer->num_used_blocks(), 3);  // 10 tokens + 2 drafts fed back.
  ASSERT_OK(proposer->CheckInvariants());
  // Too long for the pool: no drafts, and a's shadow is not evicted for nothing.
  Request b = request(2, 40);
  ASSERT_OK_AND_ASSIGN(drafts, proposer->Propose(std::vector<DraftQuery>{{&b, 3}}));
  EXPECT_TRUE(drafts[0].empty());
  EXPECT_EQ(proposer->num_used_blocks(), 3);
  // The first draft accepted, then another token: the shadow keeps the K/V of both known
  // tokens and proposes the same as a fresh start would.
  a.token_ids.push_back(expected[0]);
  a.token_ids.push_back(expected[0] == 9 ? 10 : 9);
  ASSERT_OK_AND_ASSIGN(drafts, proposer->Propose(std::vector<DraftQuery>{{&a, 2}}));
  EXPECT_EQ(drafts[0], testing::Greedy(other_dir_->path(), *backend_, a.token_ids, 2));
  ASSERT_OK(proposer->CheckInvariants());
  // One that fits only once the idle shadow (a's) is evicted.
  Request c = request(3, 26);
  ASSERT_OK_AND_ASSIGN(drafts, proposer->Propose(std::vector<DraftQuery>{{&c, 3}}));
  EXPECT_EQ(drafts[0], testing::Greedy(other_dir_->path(), *backend_, c.token_ids, 3));
  EXPECT_EQ(proposer->num_used_blocks(), 7);  // 26 + 2 tokens.
  ASSERT_OK(proposer->CheckInvariants());
  proposer->Forget(a.id);
  proposer->Forget(c.id);
  EXPECT_EQ(proposer->num_used_blocks(), 0);
  EXPECT_EQ(proposer->num_tracked(), 0u);
}

}  // namespace
}  // namespace iquest
