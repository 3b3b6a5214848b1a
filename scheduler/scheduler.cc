#include "scheduler/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"

namespace iquest {

absl::Status SchedulerConfig::Validate() const {
  if (!(max_num_batched_tokens >= 1 && max_num_batched_tokens <= (1 << 20))) {
    return absl::InvalidArgumentError("max_num_batched_tokens must be in [1, 1048576]");
  }
  if (!(max_num_seqs >= 1 && max_num_seqs <= 65536)) {
    return absl::InvalidArgumentError("max_num_seqs must be in [1, 65536]");
  }
  if (!(max_waiting_requests >= 0 && max_waiting_requests <= (1 << 24))) {
    return absl::InvalidArgumentError("max_waiting_requests must be in [0, 16777216]");
  }
  if (max_model_len < 1) return absl::InvalidArgumentError("max_model_len must be >= 1");
  if (min_steps_before_priority_preemption < 0) {
    return absl::InvalidArgumentError("min_steps_before_priority_preemption must be >= 0");
  }
  if (!(long_prefill_token_threshold >= 0 && long_prefill_token_threshold <= (1 << 20))) {
    return absl::InvalidArgumentError("long_prefill_token_threshold must be in [0, 1048576]");
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(const SchedulerConfig& config, int64_t num_blocks, int64_t block_size,
                     int64_t vocab_size)
    : config_(config),
      fit_limits_{vocab_size, config.max_model_len, num_blocks, block_size},
      blocks_(num_blocks, block_size, config.enable_prefix_caching) {
  CHECK(config.Validate().ok()) << config.Validate();
}

absl::StatusOr<uint64_t> Scheduler::AddRequest(std::unique_ptr<Request> request) {
  RETURN_IF_ERROR(
      CheckFits(request->prompt_token_ids(), request->sampling.max_tokens, fit_limits_));
  if (num_queued_ >= config_.max_waiting_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("waiting queue is full (", config_.max_waiting_requests, " requests)"));
  }
  request->id = next_id_++;
  request->state = RequestState::kWaiting;
  Request* raw = request.get();
  live_[raw->id] = std::move(request);
  waiting_.insert(raw);
  ++num_queued_;
  return raw->id;
}

void Scheduler::ExpireDeadlines(Clock::time_point now) {
  std::vector<Request*> expired;
  for (Request* r : waiting_) {
    if (r->deadline && *r->deadline <= now) expired.push_back(r);
  }
  for (Request* r : running_) {
    if (r->deadline && *r->deadline <= now) expired.push_back(r);
  }
  for (Request* r : expired) Retire(*r, FinishReason::kDeadlineExceeded);
}

int64_t Scheduler::ChunkCap(int64_t num_tokens) const {
  const int64_t cap = config_.long_prefill_token_threshold;
  return cap > 0 ? std::min(num_tokens, cap) : num_tokens;
}

ScheduledBatch Scheduler::Schedule(Clock::time_point now) {
  ExpireDeadlines(now);
  ++num_steps_;
  PreemptForPriority();
  ScheduledBatch batch;
  int64_t budget = config_.max_num_batched_tokens;
  bool preempted = false;
  ScheduleRunning(batch, budget, preempted);
  // As in vLLM: a step that had to preempt admits nobody new.
  if (!preempted) ScheduleWaiting(batch, budget);
  for (const ScheduledRequest& s : batch.requests) batch.num_tokens += s.num_tokens;
  return batch;
}

void Scheduler::PreemptForPriority() {
  while (!waiting_.empty() && !running_.empty()) {
    const Request& top = **waiting_.begin();  // The most important waiting request.
    Request& victim = *running_.back();       // The least important, newest running one.
    if (!(top.priority < victim.priority)) return;
    if (num_steps_ - victim.admitted_step < config_.min_steps_before_priority_preemption) return;
    const bool no_seat = num_running() + top.sampling.n > config_.max_num_seqs;
    const int64_t first_chunk =
        ChunkCap(std::min(top.num_tokens(), config_.max_num_batched_tokens));
    const bool no_blocks =
        blocks_.NumBlocksToAllocate(top, first_chunk) > blocks_.num_free_blocks();
    if (!no_seat && !no_blocks) return;
    Preempt(victim);
    ++counters_.num_priority_preemptions;
  }
}

void Scheduler::ScheduleRunning(ScheduledBatch& batch, int64_t& budget, bool& preempted) {
  // running_ is kept in (priority, arrival) order, so preemption victims come off the back.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Request& request = *running_[i];
    const int64_t num_new =
        ChunkCap(std::min(request.num_tokens() - request.num_computed_tokens, budget));
    CHECK_GT(num_new, 0) << "running request " << request.id << " has nothing to compute";
    if (!ReserveForRunning(request, num_new, batch, preempted)) break;  // It preempted itself.
    batch.requests.push_back({&request, num_new});
    budget -= num_new;
  }
}

bool Scheduler::ReserveForRunning(Request& request, int64_t num_new, ScheduledBatch& batch,
                                  bool& preempted) {
  while (true) {
    const bool copy = blocks_.NeedsCopy(request, request.num_computed_tokens);
    const int64_t needed =
        blocks_.NumBlocksToAllocate(request, request.num_computed_tokens + num_new) +
        (copy ? 1 : 0);
    if (needed <= blocks_.num_free_blocks()) {
      if (copy)
        batch.block_copies.push_back(blocks_.CopyOnWrite(request, request.num_computed_tokens));
      CHECK(blocks_.Allocate(request, request.num_computed_tokens + num_new));
      return true;
    }
    Request* victim = running_.back();
    Preempt(*victim);
    preempted = true;
    if (victim == &request) return false;
  }
}

void Scheduler::Preempt(Request& victim) {
  blocks_.Free(victim);
  victim.num_computed_tokens = 0;
  victim.state = RequestState::kWaiting;
  ++victim.num_preemptions;
  ++counters_.num_preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), &victim));
  waiting_.insert(&victim);  // Its arrival time puts it ahead of later arrivals.
}

void Scheduler::ScheduleWaiting(ScheduledBatch& batch, int64_t& budget) {
  std::map<std::string, int64_t> tenant_used;
  std::set<std::string> tenants;
  for (const Request* r : waiting_) tenants.insert(r->tenant);
  if (tenants.size() > 1) {
    // Fair share first, then the leftover to anyone.
    const int64_t share =
        (budget + static_cast<int64_t>(tenants.size()) - 1) / static_cast<int64_t>(tenants.size());
    if (!AdmitWaiting(batch, budget, share, tenant_used)) return;
  }
  AdmitWaiting(batch, budget, -1, tenant_used);
}

bool Scheduler::AdmitWaiting(ScheduledBatch& batch, int64_t& budget, int64_t tenant_cap,
                             std::map<std::string, int64_t>& tenant_used) {
  for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0;) {
    Request& request = **it;
    if (num_running() + request.sampling.n > config_.max_num_seqs) return false;
    int64_t allowance = budget;
    if (tenant_cap >= 0) allowance = std::min(allowance, tenant_cap - tenant_used[request.tenant]);
    if (allowance <= 0) {
      ++it;  // This tenant has had its share; others may still use theirs.
      continue;
    }
    // Prompt logprobs need every prompt position computed, so such a request takes no cached
    // prefix (as in vLLM); its full blocks are still cached for others afterwards.
    const BlockManager::CachedPrefix prefix = request.sampling.prompt_logprobs > 0
                                                  ? BlockManager::CachedPrefix()
                                                  : blocks_.FindCachedPrefix(request);
    const int64_t num_new = ChunkCap(std::min(request.num_tokens() - prefix.num_tokens, allowance));
    if (!blocks_.Allocate(request, prefix.num_tokens + num_new, &prefix)) return false;
    counters_.prefix_cache_queries += request.num_tokens();
    counters_.prefix_cache_hits += prefix.num_tokens;
    request.num_computed_tokens = prefix.num_tokens;
    if (request.num_preemptions == 0) {
      request.num_cached_tokens = prefix.num_tokens;
      --num_queued_;
    }
    request.state = RequestState::kRunning;
    request.admitted_step = num_steps_;
    it = waiting_.erase(it);
    running_.insert(std::upper_bound(running_.begin(), running_.end(), &request, WaitingOrder()),
                    &request);
    batch.requests.push_back({&request, num_new});
    budget -= num_new;
    tenant_used[request.tenant] += num_new;
  }
  return true;
}

std::vector<const Request*> Scheduler::Update(const ScheduledBatch& batch,
                                              const std::vector<std::vector<int32_t>>& sampled) {
  CHECK_EQ(sampled.size(), batch.requests.size());
  std::vector<const Request*> forks;
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    Request& request = *batch.requests[i].request;
    if (request.is_finished()) continue;  // Finished between Schedule and Update.
    request.num_computed_tokens += batch.requests[i].num_tokens;
    blocks_.CacheFullBlocks(request);
    if (request.num_computed_tokens < request.num_tokens()) {
      CHECK(sampled[i].empty()) << "a prompt chunk produced a token";
      continue;
    }
    CHECK(!sampled[i].empty()) << "request " << request.id << " finished a step without a token";
    if (sampled[i].size() > 1) Fork(request, sampled[i], forks);
    const FinishReason reason = AppendToken(request, sampled[i][0], config_.max_model_len);
    if (reason != FinishReason::kNone) Retire(request, reason);
  }
  return forks;
}

void Scheduler::Fork(Request& parent, const std::vector<int32_t>& tokens,
                     std::vector<const Request*>& forks) {
  CHECK_EQ(static_cast<int64_t>(tokens.size()), parent.sampling.n);
  parent.sampling.n = 1;  // Forks once, even if it is later preempted and recomputed.
  for (size_t k = 1; k < tokens.size(); ++k) {
    auto child = std::make_unique<Request>(parent);
    child->id = next_id_++;
    child->sample_index = static_cast<int32_t>(k);
    child->forked = true;
    child->block_ids.clear();
    blocks_.Fork(parent, *child);
    Request* raw = child.get();
    live_[raw->id] = std::move(child);
    running_.insert(std::upper_bound(running_.begin(), running_.end(), raw, WaitingOrder()), raw);
    forks.push_back(raw);
    const FinishReason reason = AppendToken(*raw, tokens[k], config_.max_model_len);
    if (reason != FinishReason::kNone) Retire(*raw, reason);
  }
}

bool Scheduler::Finish(uint64_t id, FinishReason reason) {
  auto it = live_.find(id);
  if (it == live_.end()) return false;
  Retire(*it->second, reason);
  return true;
}

void Scheduler::Retire(Request& request, FinishReason reason) {
  CHECK(!request.is_finished());
  if (request.state == RequestState::kWaiting) {
    waiting_.erase(&request);
    if (request.num_preemptions == 0) --num_queued_;
  } else {
    running_.erase(std::find(running_.begin(), running_.end(), &request));
  }
  blocks_.Free(request);
  request.state = RequestState::kFinished;
  request.finish_reason = reason;
  auto it = live_.find(request.id);
  finished_.push_back(std::move(it->second));
  live_.erase(it);
}

std::vector<std::unique_ptr<Request>> Scheduler::TakeFinished() {
  std::vector<std::unique_ptr<Request>> out = std::move(finished_);
  finished_.clear();
  return out;
}

const Request* Scheduler::Find(uint64_t id) const {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second.get();
}

std::vector<const Request*> Scheduler::LiveRequests() const {
  std::vector<const Request*> out;
  for (const auto& [id, request] : live_) out.push_back(request.get());
  return out;
}

}  // namespace iquest
