// Scheduler unit tests with tiny numbers (block_size 4, 8 blocks) and a fake model step that
// appends token 100 + step to every request that reaches its end. Each test asserts the per-step
// contract {request id: num_tokens}.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

std::vector<int32_t> Outputs(const Request& r) {
  return std::vector<int32_t>(r.output_token_ids().begin(), r.output_token_ids().end());
}
using StepMap = std::map<uint64_t, int64_t>;

class SchedulerTest : public ::testing::Test {
 protected:
  void Configure(int64_t budget, int64_t max_seqs = 8, int64_t num_blocks = 8,
                 int64_t long_prefill_token_threshold = 0, int64_t min_steps_before_preempt = 8) {
    SchedulerConfig config;
    config.long_prefill_token_threshold = long_prefill_token_threshold;
    config.min_steps_before_priority_preemption = min_steps_before_preempt;
    config.max_num_batched_tokens = budget;
    config.max_num_seqs = max_seqs;
    config.max_waiting_requests = 4;
    config.max_model_len = 64;
    config.tenant_weights = tenant_weights_;
    scheduler_ = std::make_unique<Scheduler>(config, num_blocks, 4);
  }

  uint64_t Add(int prompt_len, int max_tokens, int priority = 0, std::string tenant = "",
               int arrival_ms = 0) {
    auto r = std::make_unique<Request>();
    std::vector<int32_t> prompt;
    for (int i = 0; i < prompt_len; ++i) prompt.push_back(i + 1);
    r->SetPrompt(std::move(prompt));
    r->sampling.max_tokens = max_tokens;
    r->priority = priority;
    r->tenant = std::move(tenant);
    r->arrival_time = Clock::time_point(std::chrono::milliseconds(arrival_ms));
    absl::StatusOr<uint64_t> id = scheduler_->AddRequest(std::move(r));
    EXPECT_OK(id);
    return id.ok() ? *id : 0;
  }

  // One step: schedule, then a fake forward that samples 100 + step for finishing requests.
  StepMap Step(Clock::time_point now = Clock::time_point()) {
    const ScheduledBatch batch = scheduler_->Schedule(now);
    StepMap out;
    std::vector<std::vector<int32_t>> sampled(batch.requests.size());
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      const Request& r = *batch.requests[i].request;
      out[r.id] = batch.requests[i].num_tokens;
      if (r.num_computed_tokens + batch.requests[i].num_tokens == r.num_tokens()) {
        sampled[i].push_back(100 + step_);
      }
    }
    scheduler_->Update(batch, sampled);
    ++step_;
    EXPECT_OK(scheduler_->block_manager().CheckInvariants(scheduler_->LiveRequests()));
    return out;
  }

  TenantWeights tenant_weights_;  // Set before Configure.
  std::unique_ptr<Scheduler> scheduler_;
  int step_ = 0;
};

TEST_F(SchedulerTest, PrefillThenDecodeWithoutPhases) {
  Configure(/*budget=*/16);
  const uint64_t a = Add(6, 3);
  const uint64_t b = Add(3, 2);
  EXPECT_EQ(Step(), (StepMap{{a, 6}, {b, 3}}));  // Both prompts in one step.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 1}}));  // Decodes.
  EXPECT_EQ(Step(), (StepMap{{a, 1}}));          // b finished at max_tokens = 2.
  EXPECT_EQ(Step(), StepMap{});
  auto finished = scheduler_->TakeFinished();
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[0]->id, b);
  EXPECT_EQ(Outputs(*finished[0]), (std::vector<int32_t>{100, 101}));
  EXPECT_EQ(Outputs(*finished[1]), (std::vector<int32_t>{100, 101, 102}));
  EXPECT_EQ(finished[1]->finish_reason, FinishReason::kLength);
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 0);
}

TEST_F(SchedulerTest, LongPromptIsChunkedAndMixesWithDecodes) {
  Configure(/*budget=*/8);
  const uint64_t a = Add(3, 4);
  EXPECT_EQ(Step(), (StepMap{{a, 3}}));
  const uint64_t b = Add(20, 1);  // 20-token prompt, budget 8: chunks of 7, 7, 6 beside a's decode.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 7}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 7}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 6}}));
  EXPECT_EQ(scheduler_->Find(b), nullptr);  // Finished: max_tokens 1 arrived with its last chunk.
}

TEST_F(SchedulerTest, LongPrefillThresholdCapsEachRequestsChunk) {
  Configure(/*budget=*/16, /*max_seqs=*/8, /*num_blocks=*/16, /*long_prefill_token_threshold=*/5);
  const uint64_t a = Add(3, 6);
  EXPECT_EQ(Step(), (StepMap{{a, 3}}));
  // Two long prompts: 5 tokens each per step although the budget has room for more, so a's
  // decode shares small steps; the budget left over stays unused (the cap is per request).
  const uint64_t b = Add(12, 1);
  const uint64_t c = Add(7, 1);
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 5}, {c, 5}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 5}, {c, 2}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 2}}));
  EXPECT_EQ(scheduler_->Find(b), nullptr);
  EXPECT_EQ(scheduler_->Find(c), nullptr);
  EXPECT_EQ(Step(), (StepMap{{a, 1}}));  // Decodes are never capped below one token.
}

TEST_F(SchedulerTest, AMoreImportantArrivalPreemptsTheLeastImportantAfterItsMinimumSteps) {
  Configure(/*budget=*/16, /*max_seqs=*/2, /*num_blocks=*/8, /*long_prefill_token_threshold=*/0,
            /*min_steps_before_preempt=*/2);
  const uint64_t a = Add(4, 20, /*priority=*/5, "", /*arrival_ms=*/0);
  const uint64_t b = Add(4, 20, /*priority=*/5, "", /*arrival_ms=*/1);
  EXPECT_EQ(Step(), (StepMap{{a, 4}, {b, 4}}));                        // Step 1: both admitted.
  const uint64_t c = Add(4, 3, /*priority=*/0, "", /*arrival_ms=*/2);  // No seat for it.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 1}}));  // Step 2: b has run 1 step of its 2; c waits.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {c, 4}}));  // Step 3: b (least important, newest) yields.
  EXPECT_EQ(scheduler_->counters().num_priority_preemptions, 1);
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {c, 1}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {c, 1}}));  // c's third token: done.
  EXPECT_EQ(scheduler_->Find(c), nullptr);
  // b returns: its prompt block is still in the prefix cache, so it recomputes its 2 outputs.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 2}}));
  // An equal priority never preempts: d waits for a seat although b is preemptible by age.
  const uint64_t d = Add(4, 2, /*priority=*/5, "", /*arrival_ms=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 1}}));
  EXPECT_EQ(scheduler_->Find(d)->state, RequestState::kWaiting);
  EXPECT_EQ(scheduler_->counters().num_priority_preemptions, 1);
}

TEST_F(SchedulerTest, PromptLogprobsTakeNoCachedPrefix) {
  Configure(/*budget=*/16, /*max_seqs=*/8, /*num_blocks=*/16);
  const uint64_t a = Add(9, 1);
  EXPECT_EQ(Step(), (StepMap{{a, 9}}));  // Done; its two full blocks stay cached.
  const uint64_t b = Add(9, 1);
  EXPECT_EQ(Step(), (StepMap{{b, 1}}));  // 8 of 9 prompt tokens from the cache.
  auto r = std::make_unique<Request>();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 9; ++i) prompt.push_back(i + 1);  // The same prompt as Add's.
  r->SetPrompt(std::move(prompt));
  r->sampling.max_tokens = 1;
  r->sampling.prompt_logprobs = 1;  // Needs every prompt position's logits.
  ASSERT_OK_AND_ASSIGN(const uint64_t c, scheduler_->AddRequest(std::move(r)));
  EXPECT_EQ(Step(), (StepMap{{c, 9}}));
}

TEST_F(SchedulerTest, LongPrefillThresholdIsValidated) {
  SchedulerConfig config;
  config.long_prefill_token_threshold = -1;
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
  config.long_prefill_token_threshold = 0;
  EXPECT_OK(config.Validate());
}

TEST_F(SchedulerTest, AdmissionByPriorityThenArrival) {
  Configure(/*budget=*/4, /*max_seqs=*/1);
  const uint64_t late_urgent = Add(2, 1, /*priority=*/-1, "", /*arrival_ms=*/20);
  const uint64_t early = Add(2, 1, 0, "", 10);
  const uint64_t earliest = Add(2, 1, 0, "", 5);
  EXPECT_EQ(Step(), (StepMap{{late_urgent, 2}}));
  EXPECT_EQ(Step(), (StepMap{{earliest, 2}}));
  EXPECT_EQ(Step(), (StepMap{{early, 2}}));
}

TEST_F(SchedulerTest, PreemptsTheLeastImportantNewestRequestByRecompute) {
  Configure(/*budget=*/32, /*max_seqs=*/8, /*num_blocks=*/4);  // 16 token slots.
  const uint64_t a = Add(7, 8, 0, "", 1);                      // Blocks 0,1.
  const uint64_t b = Add(7, 8, 0, "", 2);                      // Blocks 2,3.
  EXPECT_EQ(Step(), (StepMap{{a, 7}, {b, 7}}));
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 1}}));  // Position 7 still fits in block 1.
  // Position 8 needs a third block each, and none is free: b, the newer, gives its blocks back.
  EXPECT_EQ(Step(), (StepMap{{a, 1}}));
  const Request* preempted = scheduler_->Find(b);
  ASSERT_NE(preempted, nullptr);
  EXPECT_EQ(preempted->state, RequestState::kWaiting);
  EXPECT_EQ(preempted->num_computed_tokens, 0);
  EXPECT_EQ(preempted->num_output_tokens(), 2);  // Its tokens are kept and recomputed later.
  EXPECT_EQ(scheduler_->counters().num_preemptions, 1);
}

TEST_F(SchedulerTest, FairShareAmongTenants) {
  Configure(/*budget=*/8, /*max_seqs=*/8, /*num_blocks=*/16);
  const uint64_t a1 = Add(8, 1, 0, "a", 1);
  const uint64_t a2 = Add(8, 1, 0, "a", 2);
  const uint64_t b1 = Add(8, 1, 0, "b", 3);
  // Without fair share a1 would take the whole budget; with it a1 and b1 get 4 each.
  EXPECT_EQ(Step(), (StepMap{{a1, 4}, {b1, 4}}));
  (void)a2;
}

TEST_F(SchedulerTest, TenantWeightsSplitTheBudgetAndLeftoversGoToOthers) {
  tenant_weights_ = {{"a", 3.0}};  // b is not named: weight 1.
  Configure(/*budget=*/8, /*max_seqs=*/8, /*num_blocks=*/16);
  const uint64_t a = Add(16, 2, 0, "a", 1);
  const uint64_t b = Add(16, 2, 0, "b", 2);
  EXPECT_EQ(Step(), (StepMap{{a, 6}, {b, 2}}));  // 3:1.
  EXPECT_EQ(Step(), (StepMap{{a, 6}, {b, 2}}));
  EXPECT_EQ(Step(), (StepMap{{a, 4}, {b, 4}}));  // a needs only 4: b takes the rest.
  EXPECT_EQ(Step(), (StepMap{{a, 1}, {b, 7}}));  // A decode is one token; work-conserving.
  EXPECT_EQ(Step(), (StepMap{{b, 1}}));          // a is done; b's prompt ended last step.
}

TEST_F(SchedulerTest, FractionalSharesAreCarriedBetweenSteps) {
  tenant_weights_ = {{"a", 3.0}, {"b", 1.0}};
  Configure(/*budget=*/5, /*max_seqs=*/8, /*num_blocks=*/16);
  const uint64_t a = Add(40, 1, 0, "a", 1);
  const uint64_t b = Add(40, 1, 0, "b", 2);
  // Shares are 3.75 and 1.25 tokens; what rounding withholds in one step is paid in the next, so
  // over four steps the grants are exactly 15:5.
  EXPECT_EQ(Step(), (StepMap{{a, 4}, {b, 1}}));
  EXPECT_EQ(Step(), (StepMap{{a, 4}, {b, 1}}));
  EXPECT_EQ(Step(), (StepMap{{a, 3}, {b, 2}}));
  EXPECT_EQ(Step(), (StepMap{{a, 4}, {b, 1}}));
}

TEST_F(SchedulerTest, FreeSeatsGoByWeight) {
  tenant_weights_ = {{"a", 3.0}};
  Configure(/*budget=*/64, /*max_seqs=*/3, /*num_blocks=*/16);
  const uint64_t b1 = Add(1, 3, 0, "b", 0);
  const uint64_t b2 = Add(1, 3, 0, "b", 0);
  const uint64_t a1 = Add(1, 3, 0, "a", 1);
  const uint64_t a2 = Add(1, 3, 0, "a", 1);
  // The next seat goes to the fewest seats per weight if admitted: a1 (1/3), a2 (2/3), then b1
  // (1/1). With equal weights it would be b1, a1, b2 (ties go by arrival).
  EXPECT_EQ(Step(), (StepMap{{a1, 1}, {a2, 1}, {b1, 1}}));
  EXPECT_EQ(scheduler_->Find(b2)->state, RequestState::kWaiting);
}

TEST_F(SchedulerTest, DeadlinesExpireWaitingAndRunningRequests) {
  Configure(/*budget=*/16, /*max_seqs=*/1);
  auto make = [&](int64_t deadline_ms) {
    auto r = std::make_unique<Request>();
    r->SetPrompt({1, 2});
    r->sampling.max_tokens = 10;
    r->deadline = Clock::time_point(std::chrono::milliseconds(deadline_ms));
    return *scheduler_->AddRequest(std::move(r));
  };
  const uint64_t running = make(100);
  const uint64_t waiting = make(50);
  const auto at = [](int ms) { return Clock::time_point(std::chrono::milliseconds(ms)); };
  EXPECT_EQ(Step(at(10)), (StepMap{{running, 2}}));
  EXPECT_EQ(Step(at(60)), (StepMap{{running, 1}}));  // `waiting` expired in the queue.
  EXPECT_EQ(Step(at(100)), StepMap{});               // `running` expired mid-generation.
  auto finished = scheduler_->TakeFinished();
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[0]->id, waiting);
  EXPECT_EQ(finished[0]->finish_reason, FinishReason::kDeadlineExceeded);
  EXPECT_EQ(finished[1]->finish_reason, FinishReason::kDeadlineExceeded);
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 0);
}

TEST_F(SchedulerTest, CancellationFreesBlocksAtOnce) {
  Configure(/*budget=*/16);
  const uint64_t a = Add(9, 10);
  Step();
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 3);
  EXPECT_TRUE(scheduler_->Finish(a, FinishReason::kCancelled));
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 0);
  EXPECT_FALSE(scheduler_->Finish(a, FinishReason::kCancelled));
  EXPECT_EQ(Step(), StepMap{});
}

TEST_F(SchedulerTest, RejectsWhatCanNeverRunAndBoundsTheQueue) {
  Configure(/*budget=*/16, /*max_seqs=*/8, /*num_blocks=*/4);
  auto add = [&](int prompt, int max_tokens) {
    auto r = std::make_unique<Request>();
    r->SetPrompt(std::vector<int32_t>(static_cast<size_t>(prompt), 1));
    r->sampling.max_tokens = max_tokens;
    return scheduler_->AddRequest(std::move(r)).status();
  };
  EXPECT_STATUS_CODE(add(0, 1), absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(add(60, 5), absl::StatusCode::kInvalidArgument);  // > max_model_len.
  EXPECT_STATUS_CODE(add(16, 1), absl::StatusCode::kOutOfRange);  // 17 tokens > 16 slots: never.
  for (int i = 0; i < 4; ++i) EXPECT_OK(add(2, 1));
  EXPECT_STATUS_CODE(add(2, 1), absl::StatusCode::kResourceExhausted);  // Queue of 4 is full.
}

TEST_F(SchedulerTest, ForkSharesThePromptAndCopiesOnWrite) {
  Configure(/*budget=*/16);
  auto r = std::make_unique<Request>();
  r->SetPrompt({1, 2, 3, 4, 5, 6});  // |1 2 3 4|5 6 _ _
  r->sampling.max_tokens = 3;
  r->sampling.n = 3;
  const uint64_t parent = *scheduler_->AddRequest(std::move(r));
  ScheduledBatch batch = scheduler_->Schedule(Clock::time_point());
  ASSERT_EQ(batch.requests.size(), 1u);
  scheduler_->Update(batch, {{7, 8, 9}});  // Three first tokens from one set of logits.
  EXPECT_EQ(scheduler_->num_running(), 3);
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 2);  // All share blocks 0 and 1.
  batch = scheduler_->Schedule(Clock::time_point());
  ASSERT_EQ(batch.requests.size(), 3u);
  // Each writes position 6 in shared block 1: two copies; the last holder keeps the original.
  EXPECT_EQ(batch.block_copies.size(), 2u);
  EXPECT_EQ(scheduler_->block_manager().num_used_blocks(), 4);
  EXPECT_OK(scheduler_->block_manager().CheckInvariants(scheduler_->LiveRequests()));
  EXPECT_EQ(Outputs(*scheduler_->Find(parent)), (std::vector<int32_t>{7}));
}

}  // namespace
}  // namespace iquest
