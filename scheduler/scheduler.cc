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
  if (local_window < 0 || (local_window > 0 && num_local_blocks < 1)) {
    return absl::InvalidArgumentError("local_window must be >= 0, with num_local_blocks >= 1");
  }
  if (min_steps_before_priority_preemption < 0) {
    return absl::InvalidArgumentError("min_steps_before_priority_preemption must be >= 0");
  }
  for (const auto& [tenant, weight] : tenant_weights) {
    if (!(weight > 0.0 && weight <= kMaxTenantWeight)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tenant weight of '", tenant, "' must be in (0, ", kMaxTenantWeight, "]"));
    }
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
      blocks_(num_blocks, block_size, config.enable_prefix_caching, config.local_window,
              config.num_local_blocks) {
  CHECK(config.Validate().ok()) << config.Validate();
  blocks_.global().set_record_kv_events(config.record_kv_events);
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

double Scheduler::TenantWeight(const std::string& tenant) const {
  auto it = config_.tenant_weights.find(tenant);
  return it == config_.tenant_weights.end() ? 1.0 : it->second;
}

ScheduledBatch Scheduler::Schedule(Clock::time_point now) {
  ExpireDeadlines(now);
  ++num_steps_;
  PreemptForPriority();
  std::vector<Candidate> running;
  for (Request* r : running_) {
    const int64_t remaining = r->num_tokens() - r->num_computed_tokens;
    CHECK_GT(remaining, 0) << "running request " << r->id << " has nothing to compute";
    running.push_back({r, ChunkCap(remaining)});
  }
  std::vector<Candidate> admissions = PickAdmissions();
  PlanGrants(running, admissions);
  PlanDrafts(running, admissions);
  ScheduledBatch batch;
  bool preempted = false;
  ScheduleRunning(running, batch, preempted);
  // As in vLLM: a step that had to preempt admits nobody new.
  if (!preempted) Admit(admissions, batch);
  AddDrafts(running, batch);
  for (const ScheduledRequest& s : batch.requests) batch.num_tokens += s.num_tokens;
  CHECK_LE(batch.num_tokens, config_.max_num_batched_tokens);
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
    const bool no_blocks = !blocks_.Fits(top, first_chunk);
    if (!no_seat && !no_blocks) return;
    Preempt(victim);
    ++counters_.num_priority_preemptions;
  }
}

std::vector<Scheduler::Candidate> Scheduler::PickAdmissions() {
  std::vector<Candidate> picks;
  int64_t seats = config_.max_num_seqs - num_running();
  if (seats <= 0 || waiting_.empty()) return picks;
  std::map<std::string, int64_t> seats_held;
  for (const Request* r : running_) ++seats_held[r->tenant];
  // Each tenant's waiting requests in waiting order, and the next one to consider.
  std::map<std::string, std::vector<Request*>> queues;
  for (Request* r : waiting_) queues[r->tenant].push_back(r);
  std::map<std::string, size_t> next;
  // Every admission computes at least one token, so the budget bounds the picks too.
  while (seats > 0 && static_cast<int64_t>(picks.size()) < config_.max_num_batched_tokens) {
    Request* best = nullptr;
    double best_load = 0.0;
    for (const auto& [tenant, queue] : queues) {
      const size_t i = next[tenant];
      if (i == queue.size()) continue;
      Request* head = queue[i];
      // Seats per unit of weight if this one were admitted: the fewest goes first.
      const double load =
          static_cast<double>(seats_held[tenant] + head->sampling.n) / TenantWeight(tenant);
      if (best == nullptr || head->priority < best->priority ||
          (head->priority == best->priority &&
           (load < best_load || (load == best_load && WaitingOrder()(head, best))))) {
        best = head;
        best_load = load;
      }
    }
    // Nobody left, or the next in line needs more seats than are free: it is not overtaken.
    if (best == nullptr || best->sampling.n > seats) break;
    seats -= best->sampling.n;
    seats_held[best->tenant] += best->sampling.n;
    ++next[best->tenant];
    // Prompt logprobs need every prompt position computed, so such a request takes no cached
    // prefix (as in vLLM); its full blocks are still cached for others afterwards.
    const int64_t cached =
        best->sampling.prompt_logprobs > 0 ? 0 : blocks_.FindCachedPrefix(*best).num_tokens;
    picks.push_back({best, ChunkCap(best->num_tokens() - cached)});
  }
  return picks;
}

void Scheduler::PlanGrants(std::vector<Candidate>& running, std::vector<Candidate>& admissions) {
  // Within a tenant and a priority: running requests first (in running_ order), then admissions
  // in pick order.
  std::map<int32_t, std::map<std::string, std::vector<Candidate*>>> classes;
  for (Candidate& c : running) classes[c.request->priority][c.request->tenant].push_back(&c);
  for (Candidate& c : admissions) classes[c.request->priority][c.request->tenant].push_back(&c);
  std::map<std::string, double> carry;
  int64_t remaining = config_.max_num_batched_tokens;
  for (auto& [priority, tenants] : classes) {
    std::vector<TenantDemand> demands;
    for (const auto& [tenant, candidates] : tenants) {
      TenantDemand d;
      d.weight = TenantWeight(tenant);
      for (const Candidate* c : candidates) d.demand += c->demand;
      auto it = carry.find(tenant);
      if (it != carry.end()) {
        d.carry = it->second;
      } else if (auto old = tenant_carry_.find(tenant); old != tenant_carry_.end()) {
        d.carry = old->second;
      }
      demands.push_back(d);
    }
    SplitTokens(remaining, demands);
    size_t k = 0;
    for (auto& [tenant, candidates] : tenants) {
      const TenantDemand& d = demands[k++];
      carry[tenant] = d.carry;
      remaining -= d.granted;
      int64_t left = d.granted;
      for (Candidate* c : candidates) {
        c->grant = std::min(c->demand, left);
        left -= c->grant;
      }
    }
  }
  tenant_carry_ = std::move(carry);  // Tenants with nothing to compute carry nothing.
}

void Scheduler::PlanDrafts(std::vector<Candidate>& running,
                           const std::vector<Candidate>& admissions) const {
  int64_t left = config_.max_num_batched_tokens;
  for (const Candidate& c : running) left -= c.grant;
  for (const Candidate& c : admissions) left -= c.grant;
  for (Candidate& c : running) {
    if (left <= 0) return;
    const Request& r = *c.request;
    // Only a decode whose real token is granted verifies drafts.
    if (r.draft_token_ids.empty() || c.grant == 0 || r.num_tokens() - r.num_computed_tokens != 1) {
      continue;
    }
    c.num_drafts = std::min<int64_t>(static_cast<int64_t>(r.draft_token_ids.size()), left);
    left -= c.num_drafts;
  }
}

int64_t Scheduler::DraftsThatFit(const Request& request, int64_t num_new,
                                 int64_t num_drafts) const {
  // The slots of the blocks it holds and of every free one, past its real tokens.
  const int64_t slots = blocks_.SlotsPast(request, request.num_computed_tokens + num_new);
  return std::clamp<int64_t>(slots, 0, num_drafts);
}

void Scheduler::AddDrafts(const std::vector<Candidate>& running, ScheduledBatch& batch) {
  std::unordered_map<const Request*, int64_t> drafts;
  for (const Candidate& c : running) {
    if (c.num_drafts > 0) drafts[c.request] = c.num_drafts;
  }
  if (drafts.empty()) return;
  // After every real token has its blocks: drafts only take what is left.
  for (ScheduledRequest& s : batch.requests) {
    auto it = drafts.find(s.request);
    if (it == drafts.end() || s.request->state != RequestState::kRunning) continue;
    const int64_t n = DraftsThatFit(*s.request, s.num_tokens, it->second);
    if (n == 0) continue;
    blocks_.Grow(*s.request, s.request->num_computed_tokens + s.num_tokens + n, nullptr,
                 batch.block_copies, batch.local_block_copies);
    s.num_tokens += n;
    s.num_draft_tokens = n;
  }
}

void Scheduler::ScheduleRunning(const std::vector<Candidate>& running, ScheduledBatch& batch,
                                bool& preempted) {
  // running_ is kept in (priority, arrival) order, so preemption victims come off the back: never
  // one already in the batch.
  for (const Candidate& c : running) {
    if (c.request->state != RequestState::kRunning) continue;  // A victim of this step.
    if (c.grant == 0) continue;
    if (!ReserveForRunning(*c.request, c.grant, batch, preempted)) break;  // It preempted itself.
    batch.requests.push_back({c.request, c.grant});
  }
}

bool Scheduler::ReserveForRunning(Request& request, int64_t num_new, ScheduledBatch& batch,
                                  bool& preempted) {
  while (true) {
    const int64_t num_total = request.num_computed_tokens + num_new;
    if (blocks_.Fits(request, num_total)) {
      blocks_.Grow(request, num_total, nullptr, batch.block_copies, batch.local_block_copies);
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
  victim.draft_token_ids.clear();
  victim.num_computed_tokens = 0;
  victim.state = RequestState::kWaiting;
  ++victim.num_preemptions;
  ++counters_.num_preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), &victim));
  waiting_.insert(&victim);  // Its arrival time puts it ahead of later arrivals.
}

void Scheduler::Admit(const std::vector<Candidate>& admissions, ScheduledBatch& batch) {
  for (const Candidate& c : admissions) {
    if (c.grant == 0) continue;
    Request& request = *c.request;
    // Looked up again: this step's allocations for running requests may have evicted blocks.
    const KvBlocks::Prefix prefix = request.sampling.prompt_logprobs > 0
                                        ? KvBlocks::Prefix()
                                        : blocks_.FindCachedPrefix(request);
    const int64_t num_new = std::min(c.grant, request.num_tokens() - prefix.num_tokens);
    if (!blocks_.Fits(request, prefix.num_tokens + num_new, &prefix)) return;  // No blocks.
    blocks_.Grow(request, prefix.num_tokens + num_new, &prefix, batch.block_copies,
                 batch.local_block_copies);
    counters_.prefix_cache_queries += request.num_tokens();
    counters_.prefix_cache_hits += prefix.num_tokens;
    request.num_computed_tokens = prefix.num_tokens;
    if (request.num_preemptions == 0) {
      request.num_cached_tokens = prefix.num_tokens;
      --num_queued_;
    }
    request.state = RequestState::kRunning;
    request.admitted_step = num_steps_;
    waiting_.erase(&request);
    running_.insert(std::upper_bound(running_.begin(), running_.end(), &request, WaitingOrder()),
                    &request);
    batch.requests.push_back({&request, num_new});
  }
}

std::vector<const Request*> Scheduler::Update(const ScheduledBatch& batch,
                                              const std::vector<std::vector<int32_t>>& sampled) {
  CHECK_EQ(sampled.size(), batch.requests.size());
  std::vector<const Request*> forks;
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    Request& request = *batch.requests[i].request;
    if (request.is_finished()) continue;  // Finished between Schedule and Update.
    const int64_t num_drafts = batch.requests[i].num_draft_tokens;
    // The step's drafts count as computed only once accepted, below.
    request.num_computed_tokens += batch.requests[i].num_tokens - num_drafts;
    const std::vector<int32_t> drafts = std::move(request.draft_token_ids);
    request.draft_token_ids.clear();
    if (request.num_computed_tokens < request.num_tokens()) {
      CHECK(sampled[i].empty()) << "a prompt chunk produced a token";
      blocks_.AfterStep(request);
      continue;
    }
    const std::vector<int32_t>& tokens = sampled[i];
    CHECK(!tokens.empty()) << "request " << request.id << " finished a step without a token";
    if (request.sampling.n > 1) {
      CHECK_EQ(num_drafts, 0);
      blocks_.AfterStep(request);
      Fork(request, tokens, forks);
      const FinishReason reason = AppendToken(request, tokens[0], config_.max_model_len);
      if (reason != FinishReason::kNone) Retire(request, reason);
      continue;
    }
    CHECK_LE(static_cast<int64_t>(tokens.size()), num_drafts + 1);
    FinishReason reason = FinishReason::kNone;
    for (size_t j = 0; j < tokens.size() && reason == FinishReason::kNone; ++j) {
      if (j > 0) {
        // tokens[j - 1] was draft j - 1, accepted: the step computed its K/V.
        CHECK_EQ(tokens[j - 1], drafts[j - 1]) << "request " << request.id;
        ++request.num_computed_tokens;
      }
      reason = AppendToken(request, tokens[j], config_.max_model_len);
    }
    // Rejected drafts' slots go back: the table covers the request's tokens again.
    if (num_drafts > 0) blocks_.Truncate(request, request.num_tokens());
    blocks_.AfterStep(request);
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
    child->local_block_ids.clear();
    blocks_.Fork(parent, *child);
    Request* raw = child.get();
    live_[raw->id] = std::move(child);
    running_.insert(std::upper_bound(running_.begin(), running_.end(), raw, WaitingOrder()), raw);
    forks.push_back(raw);
    const FinishReason reason = AppendToken(*raw, tokens[k], config_.max_model_len);
    if (reason != FinishReason::kNone) Retire(*raw, reason);
  }
}

void Scheduler::SetDrafts(uint64_t id, std::vector<int32_t> draft_token_ids) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  Request& r = *it->second;
  r.draft_token_ids.clear();
  if (!MaySpeculate(r)) return;
  // Verifying k drafts appends up to k + 1 tokens.
  const int64_t max_drafts = std::min<int64_t>(r.sampling.max_tokens - r.num_output_tokens(),
                                               config_.max_model_len - r.num_tokens()) -
                             1;
  if (max_drafts <= 0) return;
  if (static_cast<int64_t>(draft_token_ids.size()) > max_drafts) draft_token_ids.resize(max_drafts);
  // An id outside the vocabulary (a proposer's bug) ends the drafts there.
  auto bad = std::find_if(draft_token_ids.begin(), draft_token_ids.end(),
                          [&](int32_t t) { return t < 0 || t >= fit_limits_.vocab_size; });
  draft_token_ids.erase(bad, draft_token_ids.end());
  r.draft_token_ids = std::move(draft_token_ids);
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
  request.draft_token_ids.clear();
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
