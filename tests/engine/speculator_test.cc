// Speculative decoding's parts on their own: the verification rule keeps the target's
// distribution (a chi-square test against float64 softmaxes), prompt lookup finds what it should,
// and the adaptive policy shrinks k on rejections, probes with backoff and stops under load.
#include "engine/speculation/speculator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "engine/model_runner.h"
#include "engine/speculation/ngram_proposer.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/batch_inputs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

// softmax(logits / temperature) in float64: the reference the draws are tested against.
std::vector<double> Softmax(std::span<const float> logits, double temperature) {
  double max = logits[0];
  for (float x : logits) max = std::max<double>(max, x);
  std::vector<double> p;
  double total = 0;
  for (float x : logits) total += p.emplace_back(std::exp((x - max) / temperature));
  for (double& x : p) x /= total;
  return p;
}

double ChiSquare(const std::vector<int64_t>& counts, const std::vector<double>& p) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = static_cast<double>(n) * p[i];
    chi += (static_cast<double>(counts[i]) - expected) *
           (static_cast<double>(counts[i]) - expected) / expected;
  }
  return chi;
}

TEST(SpeculativeVerificationTest, KeepsTheTargetDistribution) {
  // A vocabulary of 8: every token is likely enough for a chi-square test. 102,400 draws of the
  // first output token after prompt P with draft d (position 0), and of the second token when
  // d was accepted (position 1), against float64 softmaxes of the target's own logits.
  constexpr int64_t kVocab = 8;
  constexpr double kTemperature = 1.5;
  testing::TempDir dir;
  TinyModelOptions options;
  options.vocab_size = kVocab;
  options.max_position_embeddings = 64;
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  CpuBackend backend;
  ASSERT_OK_AND_ASSIGN(auto model, LlamaModel::Load(dir.path(), backend));
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  KvCacheConfig kv;
  kv.num_blocks = 260;
  kv.block_size = 4;
  // The reference rows: after P, and after P then d.
  auto row_after = [&](const std::vector<int32_t>& tokens) {
    auto cache = KvCache::Create(backend, model->config(), kv);
    EXPECT_OK(cache);
    BatchBuilder builder(kv.block_size);
    const std::vector<int32_t> table = {0, 1};
    builder.AddSequence(tokens, 0, table, LogitsWanted::kLast);
    std::vector<float> logits;
    EXPECT_OK(model->Forward(builder.Build(), **cache, logits));
    return logits;
  };
  const std::vector<double> p0 = Softmax(row_after(prompt), kTemperature);
  // The draft: the second most likely token, so that both branches are well sampled.
  std::vector<int32_t> order(kVocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p0[a] > p0[b]; });
  const int32_t draft = order[1];
  std::vector<int32_t> with_draft = prompt;
  with_draft.push_back(draft);
  const std::vector<double> p1 = Softmax(row_after(with_draft), kTemperature);

  ASSERT_OK_AND_ASSIGN(auto cache, KvCache::Create(backend, model->config(), kv));
  ModelRunner runner(*model, *cache);
  {
    // Block 0 holds P's first 4 positions, shared (read only) by every request below.
    Request prefill;
    prefill.SetPrompt(prompt);
    prefill.block_ids = {0, 1};
    prefill.sampling.seed = 1;
    ScheduledBatch batch;
    batch.requests = {{&prefill, 4, 0}};
    ASSERT_OK(runner.Execute(batch).status());
  }
  constexpr int kBatch = 256;
  std::vector<Request> requests(kBatch);
  std::vector<int64_t> first(kVocab, 0), second(kVocab, 0);
  int64_t draws = 0, accepted = 0;
  for (int round = 0; round < 400; ++round) {
    ScheduledBatch batch;
    for (int i = 0; i < kBatch; ++i) {
      Request& r = requests[static_cast<size_t>(i)];
      r = Request();
      r.id = static_cast<uint64_t>(i + 1);
      r.SetPrompt(prompt);
      r.num_computed_tokens = 4;
      r.block_ids = {0, i + 1};  // Positions 4 (P's last) and 5 (the draft): private.
      r.draft_token_ids = {draft};
      r.sampling.temperature = static_cast<float>(kTemperature);
      r.sampling.max_tokens = 10;
      r.sampling.seed = static_cast<uint64_t>(round) * kBatch + static_cast<uint64_t>(i);
      r.sampling.logprobs = i % 2;  // Half take the host path, half the backend's.
      batch.requests.push_back({&r, 2, 1});
    }
    ASSERT_OK_AND_ASSIGN(std::vector<RequestStepOutput> outputs, runner.Execute(batch));
    for (const RequestStepOutput& out : outputs) {
      ASSERT_GE(out.samples.size(), 1u);
      ++draws;
      ++first[static_cast<size_t>(out.samples[0].token)];
      EXPECT_EQ(out.num_accepted_drafts, out.samples[0].token == draft ? 1 : 0);
      if (out.samples[0].token != draft) {
        EXPECT_EQ(out.samples.size(), 1u);
        continue;
      }
      ASSERT_EQ(out.samples.size(), 2u);
      ++accepted;
      ++second[static_cast<size_t>(out.samples[1].token)];
    }
  }
  EXPECT_EQ(draws, 102400);
  // 7 degrees of freedom: P(chi2 > 24.32) = 0.001.
  EXPECT_LT(ChiSquare(first, p0), 24.32);
  EXPECT_LT(ChiSquare(second, p1), 24.32);
  EXPECT_NEAR(static_cast<double>(accepted) / static_cast<double>(draws), p0[draft], 0.01);
  // The test can fail: the same counts are far off a distribution with one token moved.
  std::vector<double> wrong = p1;
  std::swap(wrong[order[0]], wrong[order[7]]);
  if (std::abs(p1[order[0]] - p1[order[7]]) > 0.02) {
    EXPECT_GT(ChiSquare(second, wrong), 24.32);
  }
}

TEST(NgramProposerTest, ProposesWhatFollowedTheLongestMostRecentMatch) {
  NgramProposer proposer(2, 3);
  // ... 1 2 3 [4 5] ... 9 2 3 [7 8] ... 2 3 -> the most recent "2 3" is followed by 7 8.
  EXPECT_EQ(proposer.Lookup(std::vector<int32_t>{1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 6, 2, 3}, 2),
            (std::vector<int32_t>{7, 8}));
  // A longer match beats a more recent shorter one: "1 2 3" occurs once, before.
  EXPECT_EQ(proposer.Lookup(std::vector<int32_t>{1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3}, 2),
            (std::vector<int32_t>{4, 5}));
  // Nothing of ngram_min tokens recurs: no drafts.
  EXPECT_TRUE(proposer.Lookup(std::vector<int32_t>{1, 2, 3, 4, 5, 3}, 4).empty());
  // A repeating span goes on repeating past the end of the sequence.
  EXPECT_EQ(proposer.Lookup(std::vector<int32_t>{5, 6, 7, 5, 6, 7, 5, 6}, 5),
            (std::vector<int32_t>{7, 5, 6, 7, 5}));
  // Fewer tokens than the continuation has: as many as asked.
  EXPECT_EQ(proposer.Lookup(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 1, 2}, 3),
            (std::vector<int32_t>{3, 4, 5}));
  EXPECT_TRUE(proposer.Lookup(std::vector<int32_t>{1}, 3).empty());
}

// A proposer that always guesses token 0, for the policy tests.
class ZeroProposer : public Proposer {
 public:
  absl::StatusOr<std::vector<std::vector<int32_t>>> Propose(
      std::span<const DraftQuery> queries) override {
    std::vector<std::vector<int32_t>> out;
    for (const DraftQuery& q : queries) out.emplace_back(q.max_drafts, 0);
    return out;
  }
};

TEST(SpeculatorTest, RejectedDraftsShrinkKAndAcceptedOnesKeepIt) {
  SpeculationConfig config;
  config.method = SpeculationMethod::kNgram;
  config.num_speculative_tokens = 4;
  Speculator speculator(config, /*max_model_len=*/1000, std::make_unique<ZeroProposer>());
  Request good, bad;
  good.id = 1;
  bad.id = 2;
  for (Request* r : {&good, &bad}) {
    r->SetPrompt({1, 2, 3});
    r->sampling.max_tokens = 500;
  }
  auto drafts_of = [&](const Request& r) -> size_t {
    for (auto& [id, d] : speculator.Propose({&good, &bad}))
      if (id == r.id) return d.size();
    return 0;
  };
  // The prior lets both try, with one draft while the cost of a token is unknown.
  ASSERT_EQ(drafts_of(bad), 1u);
  for (int step = 0; step < 20; ++step) {
    ScheduledBatch batch;
    batch.requests = {{&good, 5, 4}, {&bad, 5, 4}};
    batch.num_tokens = 8 + 2 * (step % 2);  // N varies, so the fit learns b (0.1 ms).
    std::vector<RequestStepOutput> outputs(2);
    outputs[0].num_draft_tokens = outputs[1].num_draft_tokens = 4;
    outputs[0].num_accepted_drafts = 4;
    outputs[0].samples.resize(5);
    outputs[1].samples.resize(1);
    speculator.Observe(batch, outputs);
    speculator.ObserveStepTime(0.01 + 0.0001 * static_cast<double>(batch.num_tokens));
  }
  EXPECT_NEAR(speculator.threshold(), 0.0001 * 6 / 0.011, 1e-3);  // b * S / T.
  EXPECT_GT(speculator.acceptance(good.id), 0.9);
  EXPECT_LT(speculator.acceptance(bad.id), 0.1);
  EXPECT_EQ(drafts_of(good), 4u);
  EXPECT_EQ(drafts_of(bad), 0u);
  EXPECT_EQ(speculator.counters().num_drafts, 40);
  EXPECT_EQ(speculator.counters().num_accepted_tokens, 80);
  EXPECT_EQ(speculator.counters().accepted_per_position, (std::vector<int64_t>{20, 20, 20, 20}));
  // Not drafting (since the call above), the bad one probes with one draft after 2, 4, 8, ...
  // steps.
  std::vector<int> probes;
  for (int step = 0; step < 40; ++step) {
    if (drafts_of(bad) > 0) probes.push_back(step);
  }
  EXPECT_EQ(probes, (std::vector<int>{0, 3, 8, 17, 34}));
}

TEST(SpeculatorTest, ExpensiveTokensUnderLoadTurnDraftsOff) {
  SpeculationConfig config;
  config.method = SpeculationMethod::kNgram;
  config.num_speculative_tokens = 4;
  Speculator speculator(config, 1000, std::make_unique<ZeroProposer>());
  // Decode-only steps whose time is all per-token compute (a = 0, b = 1 ms): a big batch that
  // yields one token per request per step cannot win anything from drafts.
  std::vector<Request> requests(64);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = i + 1;
    requests[i].SetPrompt({1, 2});
    requests[i].sampling.max_tokens = 100;
  }
  for (int step = 0; step < 30; ++step) {
    const int64_t num = 32 + step % 2 * 32;  // N varies: b is identifiable.
    ScheduledBatch batch;
    std::vector<RequestStepOutput> outputs(static_cast<size_t>(num));
    for (int64_t i = 0; i < num; ++i) {
      batch.requests.push_back({&requests[static_cast<size_t>(i)], 1, 0});
      outputs[static_cast<size_t>(i)].samples.resize(1);
    }
    batch.num_tokens = num;
    speculator.Observe(batch, outputs);
    speculator.ObserveStepTime(0.001 * static_cast<double>(num));
  }
  EXPECT_NEAR(speculator.threshold(), 1.0, 1e-6);
  std::vector<const Request*> all;
  for (const Request& r : requests) all.push_back(&r);
  // Not even a probe, however long it waits: every request of a step would pay for it.
  for (int step = 0; step < 100; ++step) ASSERT_TRUE(speculator.Propose(all).empty()) << step;
}

}  // namespace
}  // namespace iquest
