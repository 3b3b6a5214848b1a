// Scheduler: continuous batching without phases. Each request has num_computed_tokens and
// num_tokens; each step gives requests tokens until the token budget (max_num_batched_tokens) or
// max_num_seqs runs out. A long prompt is simply given fewer tokens than it has (chunked prefill);
// a decode is a one-token chunk. The step's contract is {request: num_tokens}.
//
// Policy:
//  - priority classes are strict: a step's tokens go to the most important priority (lower
//    values) first, then to the next, as in Kubernetes' API Priority and Fairness;
//  - within a priority, tenants share the step's token budget by weight (--tenant-weights; unknown
//    tenants weigh 1): running decodes, prefill chunks and admissions alike, by weighted
//    water-filling with the fractions carried between steps (fair_share.h). It is work-conserving:
//    what one tenant cannot use goes to the others. Free seats (max_num_seqs) are given the same
//    way: the next admission goes to the tenant with the fewest seats per unit of weight. Seats
//    already held are not taken back for fairness (only for priority, below), so when seats are
//    the bottleneck shares converge as requests finish rather than at once;
//  - within a tenant, requests are served in (priority, arrival) order, running ones first;
//  - when blocks run out, preempt by recompute: the least important, newest running request gives
//    its blocks back and returns to the waiting queue (its tokens are kept and recomputed later);
//    a step that preempted admits nobody new;
//  - a more important waiting request that cannot get a seat or blocks preempts the least
//    important running one, bounded by min_steps_before_priority_preemption (no thrashing);
//  - an expired deadline finishes a waiting or running request; cancellation finishes it at once;
//  - speculative decoding: a decoding request's draft_token_ids are verified in its step, after
//    its real token, but only with the budget real tokens left (spare budget, given in running
//    order) and only with blocks that are free: a draft never delays a prompt or an admission,
//    and never preempts. After the step the rejected drafts' slots are given back (the block
//    table covers the request's tokens again) and only verified tokens ever get prefix-cache keys.
// Finished requests hold no blocks.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/block_manager.h"
#include "scheduler/check_fits.h"
#include "scheduler/fair_share.h"
#include "scheduler/kv_blocks.h"
#include "scheduler/request.h"

namespace iquest {

struct SchedulerConfig {
  int64_t max_num_batched_tokens = 2048;  // Token budget of one step.
  int64_t max_num_seqs = 64;              // Requests in one step.
  int64_t max_waiting_requests = 1024;    // Bound of the waiting queue.
  int64_t max_model_len = 4096;           // Prompt + output tokens of one request.
  bool enable_prefix_caching = true;
  // At most this many tokens of one request's prefill in one step (vLLM's
  // long_prefill_token_threshold), so a long prompt is spread over steps and the decodes sharing
  // them keep their pace; 0: no cap beyond the step's budget.
  int64_t long_prefill_token_threshold = 0;
  // Priority preemption: a waiting request that cannot be admitted (no seat under max_num_seqs,
  // or not the blocks for its first chunk) preempts, by recompute, the least important running
  // request if that one is strictly less important (a larger priority value) and has run at
  // least this many steps since it was admitted. The second condition bounds thrashing: a victim
  // always makes this much progress per admission, and equal priorities never preempt each other.
  int64_t min_steps_before_priority_preemption = 8;
  bool record_kv_events = false;  // For --kv-events-endpoint (kv_events.h).
  // Tenant -> weight in (0, kMaxTenantWeight]; tenants not named weigh 1.
  TenantWeights tenant_weights;
  // Loop models (kv_blocks.h): the local KV layers' window in tokens and their pool's blocks;
  // 0 and 0 for every other model. The pool must hold one request's window and a full step's
  // chunk: KvBlocks::MinLocalBlocks.
  int64_t local_window = 0;
  int64_t num_local_blocks = 0;

  absl::Status Validate() const;
};

struct ScheduledRequest {
  Request* request;
  int64_t num_tokens;  // Tokens computed this step, starting at request->num_computed_tokens.
  // Of num_tokens, the last ones are request->draft_token_ids[0, num_draft_tokens): verified
  // this step after the request's last real token (speculative decoding). 0 otherwise.
  int64_t num_draft_tokens = 0;
};

struct ScheduledBatch {
  std::vector<ScheduledRequest> requests;
  std::vector<BlockCopy> block_copies;        // Copy-on-write copies, to perform before the step.
  std::vector<BlockCopy> local_block_copies;  // The same in the local pool (Loop models).
  int64_t num_tokens = 0;
  bool empty() const { return requests.empty(); }
};

struct SchedulerCounters {
  int64_t num_preemptions = 0;           // All of them, by blocks and by priority.
  int64_t num_priority_preemptions = 0;  // For a more important waiting request.
  int64_t prefix_cache_queries = 0;      // Tokens looked up at admission.
  int64_t prefix_cache_hits = 0;         // Tokens found.
};

class Scheduler {
 public:
  // Token ids of a request must be below `vocab_size` (the model's vocabulary).
  Scheduler(const SchedulerConfig& config, int64_t num_blocks, int64_t block_size,
            int64_t vocab_size = std::numeric_limits<int32_t>::max());

  // Takes a new request and returns its engine id. CheckFits's errors for a request that can
  // never run; kResourceExhausted when the waiting queue is full.
  absl::StatusOr<uint64_t> AddRequest(std::unique_ptr<Request> request);

  // Picks this step's work. Requests whose deadline is at or before `now` are finished first.
  ScheduledBatch Schedule(Clock::time_point now);

  // Records a step's results. sampled[i] holds the new token(s) of batch.requests[i]: none for a
  // prompt chunk that did not reach the end; n for a request with sampling.n == n that finished
  // its prompt (it forks into n samples sharing its blocks); otherwise the drafts the step
  // accepted (a prefix of its num_draft_tokens) and then one token of the model's own. Tokens
  // are appended in order until one finishes the request (the rest are dropped), so
  // request->num_tokens() tells how many were taken. Returns the samples forks created (live
  // until TakeFinished hands them back).
  std::vector<const Request*> Update(const ScheduledBatch& batch,
                                     const std::vector<std::vector<int32_t>>& sampled);

  // Finishes a live request now (cancellation, stop string). False if it is unknown or finished.
  bool Finish(uint64_t id, FinishReason reason);

  // Speculative decoding: the drafts to verify in request `id`'s next step (replacing any it
  // had). Ignored unless MaySpeculate(request); clipped so that verifying them cannot pass
  // max_tokens or max_model_len.
  void SetDrafts(uint64_t id, std::vector<int32_t> draft_token_ids);

  // Requests finished since the last call, oldest first; they hold no blocks.
  std::vector<std::unique_ptr<Request>> TakeFinished();

  const Request* Find(uint64_t id) const;
  std::vector<const Request*> LiveRequests() const;
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  // Waiting requests never yet scheduled: what max_waiting_requests bounds (preempted requests
  // return to the queue without counting against it).
  int64_t num_queued() const { return num_queued_; }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  const BlockManager& block_manager() const { return blocks_.global(); }
  // Loop models' local pool (null for others).
  const BlockManager* local_block_manager() const { return blocks_.local(); }
  const KvBlocks& kv_blocks() const { return blocks_; }
  // KV-cache events since the last call (BlockManager::TakeKvEvents); see record_kv_events.
  std::vector<KvCacheEvent> TakeKvEvents() { return blocks_.global().TakeKvEvents(); }
  // Drops every prefix-cache key; FAILED_PRECONDITION while any block is in use (a request holds
  // it), as vLLM refuses a reset with requests running.
  absl::Status ResetPrefixCache() { return blocks_.ResetPrefixCache(); }
  const SchedulerCounters& counters() const { return counters_; }
  const SchedulerConfig& config() const { return config_; }
  const FitLimits& fit_limits() const { return fit_limits_; }

 private:
  // Waiting order: priority, then arrival, then id.
  struct WaitingOrder {
    bool operator()(const Request* a, const Request* b) const {
      return std::tie(a->priority, a->arrival_time, a->id) <
             std::tie(b->priority, b->arrival_time, b->id);
    }
  };

  // One request that may compute tokens this step: running, or waiting and given a seat.
  struct Candidate {
    Request* request;
    int64_t demand;          // Tokens it could compute this step (ChunkCap applied).
    int64_t grant = 0;       // Tokens the fair share gives it.
    int64_t num_drafts = 0;  // Drafts verified after the grant (spare budget only).
  };

  void ExpireDeadlines(Clock::time_point now);
  // Priority preemption (SchedulerConfig::min_steps_before_priority_preemption), before the step
  // is built so that no victim is already in the batch.
  void PreemptForPriority();
  // `num_tokens` of one request this step, capped by long_prefill_token_threshold.
  int64_t ChunkCap(int64_t num_tokens) const;
  double TenantWeight(const std::string& tenant) const;
  // Waiting requests that get the free seats this step, in admission order (seats by weight).
  std::vector<Candidate> PickAdmissions();
  // Sets every candidate's grant: priority classes in order, tenants by weight within one.
  void PlanGrants(std::vector<Candidate>& running, std::vector<Candidate>& admissions);
  // Gives running decodes' drafts what the grants left of the step's budget.
  void PlanDrafts(std::vector<Candidate>& running, const std::vector<Candidate>& admissions) const;
  void ScheduleRunning(const std::vector<Candidate>& running, ScheduledBatch& batch,
                       bool& preempted);
  void Admit(const std::vector<Candidate>& admissions, ScheduledBatch& batch);
  bool ReserveForRunning(Request& request, int64_t num_new, ScheduledBatch& batch, bool& preempted);
  // Of `num_drafts` drafts after `request`'s `num_new` real tokens (whose blocks it holds), how
  // many the free blocks hold.
  int64_t DraftsThatFit(const Request& request, int64_t num_new, int64_t num_drafts) const;
  // Last, once every real token of the step has its blocks: the running candidates' planned
  // drafts, as far as free blocks go (drafts never preempt, nor take an admission's blocks).
  void AddDrafts(const std::vector<Candidate>& running, ScheduledBatch& batch);
  void Preempt(Request& victim);
  void Fork(Request& parent, const std::vector<int32_t>& tokens,
            std::vector<const Request*>& forks);
  void Retire(Request& request, FinishReason reason);

  SchedulerConfig config_;
  FitLimits fit_limits_;
  KvBlocks blocks_;
  SchedulerCounters counters_;
  uint64_t next_id_ = 1;
  int64_t num_queued_ = 0;
  int64_t num_steps_ = 0;  // Schedule calls so far.
  // SplitTokens's carry per backlogged tenant; dropped when the tenant has nothing to compute.
  std::map<std::string, double> tenant_carry_;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> live_;
  std::set<Request*, WaitingOrder> waiting_;
  std::vector<Request*> running_;
  std::vector<std::unique_ptr<Request>> finished_;
};

}  // namespace iquest
