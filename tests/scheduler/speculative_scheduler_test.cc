// The scheduler's side of speculative decoding: drafts get only the budget and blocks real tokens
// leave, accepted drafts become tokens with K/V, rejected drafts' blocks go back, a finishing
// token drops the rest, and prefix-cache keys only ever cover verified tokens.
#include <gtest/gtest.h>

#include "scheduler/scheduler.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

constexpr int64_t kBlockSize = 4;

class SpeculativeSchedulerTest : public ::testing::Test {
 protected:
  void Configure(int64_t budget, int64_t num_blocks, bool prefix_caching = true) {
    SchedulerConfig config;
    config.max_num_batched_tokens = budget;
    config.max_num_seqs = 8;
    config.max_model_len = 64;
    config.enable_prefix_caching = prefix_caching;
    scheduler_ = std::make_unique<Scheduler>(config, num_blocks, kBlockSize, /*vocab_size=*/1000);
  }
  uint64_t Add(std::vector<int32_t> prompt, int max_tokens) {
    auto r = std::make_unique<Request>();
    r->SetPrompt(std::move(prompt));
    r->sampling.max_tokens = max_tokens;
    r->eos_token_ids = {999};
    return *scheduler_->AddRequest(std::move(r));
  }
  const Request& Get(uint64_t id) { return *scheduler_->Find(id); }
  // One step in which request i's outputs are `sampled[i]` (empty for unfinished prompts).
  ScheduledBatch Step(const std::map<uint64_t, std::vector<int32_t>>& sampled = {}) {
    ScheduledBatch batch = scheduler_->Schedule(Clock::time_point());
    std::vector<std::vector<int32_t>> tokens(batch.requests.size());
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      const ScheduledRequest& s = batch.requests[i];
      const bool ends = s.request->num_computed_tokens + s.num_tokens - s.num_draft_tokens ==
                        s.request->num_tokens();
      auto it = sampled.find(s.request->id);
      if (it != sampled.end()) {
        tokens[i] = it->second;
      } else if (ends) {
        tokens[i] = {500};
      }
    }
    last_ = batch;
    scheduler_->Update(batch, tokens);
    EXPECT_OK(scheduler_->block_manager().CheckInvariants(scheduler_->LiveRequests()));
    return batch;
  }
  int64_t Drafts(const ScheduledBatch& batch, uint64_t id) {
    for (const ScheduledRequest& s : batch.requests)
      if (s.request->id == id) return s.num_draft_tokens;
    return -1;
  }

  std::unique_ptr<Scheduler> scheduler_;
  ScheduledBatch last_;
};

TEST_F(SpeculativeSchedulerTest, AcceptedDraftsBecomeTokensAndRejectedSlotsGoBack) {
  Configure(/*budget=*/16, /*num_blocks=*/16);
  const uint64_t id = Add({1, 2, 3}, 20);
  Step();  // Prefill: 3 tokens, then 500 is sampled; 4 tokens, 3 computed.
  ASSERT_EQ(Get(id).num_tokens(), 4);
  scheduler_->SetDrafts(id, {10, 11, 12, 13, 14});  // Verifies positions 3..8.
  ASSERT_EQ(Get(id).draft_token_ids.size(), 5u);
  ScheduledBatch batch = scheduler_->Schedule(Clock::time_point());
  ASSERT_EQ(batch.requests.size(), 1u);
  EXPECT_EQ(batch.requests[0].num_tokens, 6);
  EXPECT_EQ(batch.requests[0].num_draft_tokens, 5);
  EXPECT_EQ(Get(id).block_ids.size(), 3u);  // 9 positions.
  // Two drafts accepted, then the model's own 77.
  scheduler_->Update(batch, {{10, 11, 77}});
  const Request& r = Get(id);
  EXPECT_EQ(std::vector<int32_t>(r.token_ids.begin(), r.token_ids.end()),
            (std::vector<int32_t>{1, 2, 3, 500, 10, 11, 77}));
  EXPECT_EQ(r.num_computed_tokens, 6);  // 500, 10 and 11 have K/V now; 77 not yet.
  EXPECT_TRUE(r.draft_token_ids.empty());
  EXPECT_EQ(r.block_ids.size(), 2u);  // The third block only held rejected drafts.
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 2);
  EXPECT_OK(scheduler_->block_manager().CheckInvariants(scheduler_->LiveRequests()));
}

TEST_F(SpeculativeSchedulerTest, DraftsTakeOnlyTheBudgetRealTokensLeave) {
  Configure(/*budget=*/4, /*num_blocks=*/32);
  const uint64_t a = Add({1, 2}, 20);
  Step();
  scheduler_->SetDrafts(a, {5, 6, 7, 8, 9});
  const uint64_t b = Add({1, 2, 3, 4, 5, 6, 7, 8}, 4);  // A prompt that wants the whole budget.
  ScheduledBatch batch = Step({{a, {5}}});
  EXPECT_EQ(Drafts(batch, a), 0);  // 1 for a's real token, 3 for b's prompt: nothing spare.
  scheduler_->SetDrafts(a, {5, 6, 7, 8, 9});
  batch = Step({{a, {6}}});
  // b's prompt has 5 tokens left: a's 1 and 3 of b's; still none spare.
  EXPECT_EQ(Drafts(batch, a), 0);
  scheduler_->SetDrafts(a, {5, 6, 7, 8, 9});
  batch = Step({{a, {7}}});  // b takes its last 2 prompt tokens: a may verify 1 draft.
  EXPECT_EQ(Drafts(batch, a), 1);
  EXPECT_EQ(batch.num_tokens, 4);
  (void)b;
}

TEST_F(SpeculativeSchedulerTest, DraftsNeverPreempt) {
  Configure(/*budget=*/32, /*num_blocks=*/3);
  const uint64_t a = Add({1, 2, 3}, 8);
  const uint64_t b = Add({4, 5, 6, 7}, 4);
  Step();  // a: 1 block (4 tokens); b: 2 blocks (5 tokens). No block is free.
  scheduler_->SetDrafts(a, {9, 9, 9});
  scheduler_->SetDrafts(b, {9, 9});
  ScheduledBatch batch = Step({{a, {9}}, {b, {9}}});
  // a's drafts would need a 2nd block, b's fit in its own: b verifies, nobody is preempted.
  EXPECT_EQ(Drafts(batch, a), 0);
  EXPECT_EQ(Drafts(batch, b), 2);
  EXPECT_EQ(scheduler_->counters().num_preemptions, 0);
}

TEST_F(SpeculativeSchedulerTest, AFinishingTokenDropsTheRest) {
  Configure(/*budget=*/16, /*num_blocks=*/16);
  const uint64_t id = Add({1, 2, 3}, 20);
  Step();
  scheduler_->SetDrafts(id, {10, 999, 12});
  Step({{id, {10, 999, 12, 13}}});  // EOS (999) accepted as the second draft.
  std::vector<std::unique_ptr<Request>> done = scheduler_->TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]->finish_reason, FinishReason::kStopToken);
  EXPECT_EQ(done[0]->num_output_tokens(), 3);  // 500, 10, 999.
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 0);
}

TEST_F(SpeculativeSchedulerTest, SetDraftsClipsAndIgnores) {
  Configure(/*budget=*/16, /*num_blocks=*/16);
  const uint64_t id = Add({1, 2, 3}, 4);
  scheduler_->SetDrafts(id, {1, 2});  // Waiting: ignored.
  EXPECT_TRUE(Get(id).draft_token_ids.empty());
  Step();  // 1 output token; 3 more allowed, so at most 2 drafts.
  scheduler_->SetDrafts(id, {7, 8, 9, 10});
  EXPECT_EQ(Get(id).draft_token_ids, (std::vector<int32_t>{7, 8}));
  scheduler_->SetDrafts(id, {7, 1000, 9});  // Out of the vocabulary: cut there.
  EXPECT_EQ(Get(id).draft_token_ids, (std::vector<int32_t>{7}));
  auto r = std::make_unique<Request>();
  r->SetPrompt({1, 2});
  r->sampling.max_tokens = 8;
  r->sampling.speculation = false;
  const uint64_t off = *scheduler_->AddRequest(std::move(r));
  Step();
  scheduler_->SetDrafts(off, {7});
  EXPECT_TRUE(Get(off).draft_token_ids.empty());
}

TEST_F(SpeculativeSchedulerTest, PrefixKeysCoverOnlyVerifiedTokens) {
  Configure(/*budget=*/16, /*num_blocks=*/16);
  const uint64_t id = Add({1, 2, 3}, 20);
  Step();  // 1 2 3 500
  scheduler_->SetDrafts(id, {10, 11, 12, 13});
  Step({{id, {10, 11, 12, 88}}});  // 1 2 3 500 | 10 11 12 88: 7 computed, block 2 untouched.
  scheduler_->SetDrafts(id, {20, 21});
  Step({{id, {88}}});  // 88 computed: block 1 is full and verified.
  const Request& r = Get(id);
  ASSERT_EQ(r.num_computed_tokens, 8);
  ASSERT_TRUE(scheduler_->Finish(id, FinishReason::kCancelled));
  scheduler_->TakeFinished();
  // A new request with the same tokens hits both blocks: their keys are of verified tokens.
  const uint64_t again = Add({1, 2, 3, 500, 10, 11, 12, 88, 5}, 4);
  Step();
  EXPECT_EQ(Get(again).num_cached_tokens, 8);
  // One with the rejected drafts' tokens does not.
  const uint64_t other = Add({1, 2, 3, 500, 10, 11, 12, 13, 5}, 4);
  Step();
  EXPECT_EQ(Get(other).num_cached_tokens, 4);
}

}  // namespace
}  // namespace iquest
