#include "engine/speculation/speculator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/log.h"

namespace iquest {
namespace {

// Forgetting factors: the step-cost fit follows the last ~50 decode steps, a request's
// acceptance its last ~5 verifications.
constexpr double kCostDecay = 0.98;
constexpr double kAcceptanceDecay = 0.8;
constexpr double kPriorAccepted = 1.0;
constexpr double kPriorTried = 2.0;

}  // namespace

absl::StatusOr<SpeculationMethod> ParseSpeculationMethod(const std::string& name) {
  if (name == "none") return SpeculationMethod::kNone;
  if (name == "ngram") return SpeculationMethod::kNgram;
  if (name == "draft") return SpeculationMethod::kDraft;
  return absl::InvalidArgumentError(
      absl::StrCat("speculative method '", name, "' is not one of none, ngram, draft"));
}

const char* SpeculationMethodName(SpeculationMethod method) {
  switch (method) {
    case SpeculationMethod::kNone:
      return "none";
    case SpeculationMethod::kNgram:
      return "ngram";
    case SpeculationMethod::kDraft:
      return "draft";
  }
  return "unknown";
}

absl::Status SpeculationConfig::Validate() const {
  if (num_speculative_tokens < 1 || num_speculative_tokens > kMaxSpeculativeTokens) {
    return absl::InvalidArgumentError(absl::StrCat("num_speculative_tokens must be in [1, ",
                                                   kMaxSpeculativeTokens, "], got ",
                                                   num_speculative_tokens));
  }
  if (ngram_min < 1 || ngram_max < ngram_min || ngram_max > kMaxNgram) {
    return absl::InvalidArgumentError(absl::StrCat("ngram sizes must satisfy 1 <= ngram_min (",
                                                   ngram_min, ") <= ngram_max (", ngram_max,
                                                   ") <= ", kMaxNgram));
  }
  return absl::OkStatus();
}

Speculator::Speculator(const SpeculationConfig& config, int64_t max_model_len,
                       std::unique_ptr<Proposer> proposer)
    : config_(config), max_model_len_(max_model_len), proposer_(std::move(proposer)) {
  CHECK(config.Validate().ok()) << config.Validate();
  CHECK(proposer_ != nullptr);
  counters_.accepted_per_position.assign(static_cast<size_t>(config.num_speculative_tokens), 0);
}

void Speculator::Observe(const ScheduledBatch& batch,
                         const std::vector<RequestStepOutput>& outputs) {
  CHECK_EQ(batch.requests.size(), outputs.size());
  last_num_tokens_ = batch.num_tokens;
  last_yield_ = 0;
  last_decode_only_ = true;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const ScheduledRequest& s = batch.requests[i];
    const RequestStepOutput& out = outputs[i];
    last_yield_ += static_cast<int64_t>(out.samples.size());
    if (s.num_tokens - s.num_draft_tokens != 1 || out.fork) last_decode_only_ = false;
    if (out.num_draft_tokens == 0) continue;
    ++counters_.num_drafts;
    counters_.num_draft_tokens += out.num_draft_tokens;
    counters_.num_accepted_tokens += out.num_accepted_drafts;
    for (int64_t j = 0; j < out.num_accepted_drafts; ++j) {
      ++counters_.accepted_per_position[static_cast<size_t>(j)];
    }
    // Drafts tried: the accepted ones and the first rejected one (later rows say nothing).
    const int64_t tried = std::min(out.num_accepted_drafts + 1, out.num_draft_tokens);
    Acceptance& a = acceptance_[s.request->id];
    a.accepted = a.accepted * kAcceptanceDecay + static_cast<double>(out.num_accepted_drafts);
    a.tried = a.tried * kAcceptanceDecay + static_cast<double>(tried);
  }
}

void Speculator::ObserveStepTime(double seconds) {
  ++num_steps_;
  // Prefill steps say nothing about what a decode token costs, nor about decoding's rate.
  if (!last_decode_only_ || last_num_tokens_ <= 0 || !(seconds > 0)) return;
  decode_seconds_ = seconds;
  decode_yield_ = last_yield_;
  const double n = static_cast<double>(last_num_tokens_);
  sum_w_ = sum_w_ * kCostDecay + 1;
  sum_n_ = sum_n_ * kCostDecay + n;
  sum_t_ = sum_t_ * kCostDecay + seconds;
  sum_nn_ = sum_nn_ * kCostDecay + n * n;
  sum_nt_ = sum_nt_ * kCostDecay + n * seconds;
  // Weighted least squares of T = a + b * N; b is only known once N has varied: the weighted
  // sum of squared deviations of N (variance / sum_w) at least that of one step one token off.
  const double variance = sum_nn_ * sum_w_ - sum_n_ * sum_n_;
  if (variance < sum_w_) return;
  seconds_per_token_ = std::max(0.0, (sum_w_ * sum_nt_ - sum_n_ * sum_t_) / variance);
  cost_known_ = true;
}

double Speculator::threshold() const {
  constexpr double kMin = SpeculationConfig::kMinThreshold;
  if (!(decode_seconds_ > 0) || decode_yield_ <= 0) return kMin;
  return std::clamp(seconds_per_token_ * static_cast<double>(decode_yield_) / decode_seconds_, kMin,
                    1.0);
}

double Speculator::acceptance(uint64_t id) const {
  auto it = acceptance_.find(id);
  return it == acceptance_.end() ? kPriorAccepted / kPriorTried : it->second.rate();
}

int64_t Speculator::DraftsFor(const Request& r) {
  // Verifying k drafts appends up to k + 1 tokens.
  const int64_t left = std::min<int64_t>(r.sampling.max_tokens - r.num_output_tokens(),
                                         max_model_len_ - r.num_tokens()) -
                       1;
  int64_t max_k = std::min<int64_t>(config_.num_speculative_tokens, left);
  if (max_k <= 0 || !config_.adaptive) return std::max<int64_t>(max_k, 0);
  // Until the fit knows what a token costs: one draft, two every other step. Cheap even under a
  // heavy batch, and it makes the variation in N that the fit needs (a proposer with a guess for
  // every step, such as a draft model, would otherwise keep N constant).
  if (!cost_known_) max_k = std::min<int64_t>(max_k, 1 + num_steps_ % 2);
  Acceptance& a = acceptance_[r.id];
  const double alpha = a.rate();
  const double theta = threshold();
  int64_t k = 0;
  for (double p = alpha; k < max_k && p > theta; p *= alpha) ++k;
  if (k > 0) {
    a.backoff = a.wait = 0;
    return k;
  }
  // Not drafting: one draft now and then, less and less often; never while even a sure draft
  // would barely pay (a heavy batch), since every request of the step pays for a probe.
  if (theta > SpeculationConfig::kMaxProbeThreshold) return 0;
  if (a.wait > 0) {
    --a.wait;
    return 0;
  }
  if (a.backoff == 0) {  // Just stopped: wait before the first probe.
    a.backoff = a.wait = 1;
    return 0;
  }
  a.backoff = std::min(2 * a.backoff, SpeculationConfig::kMaxBackoffSteps);
  a.wait = a.backoff;
  return 1;
}

std::vector<std::pair<uint64_t, std::vector<int32_t>>> Speculator::Propose(
    const std::vector<const Request*>& decoding) {
  std::vector<DraftQuery> queries;
  for (const Request* r : decoding) {
    const int64_t k = DraftsFor(*r);
    if (k > 0) queries.push_back({r, k});
  }
  std::vector<std::pair<uint64_t, std::vector<int32_t>>> out;
  if (queries.empty()) return out;
  absl::StatusOr<std::vector<std::vector<int32_t>>> drafts = proposer_->Propose(queries);
  if (!drafts.ok()) {
    LOG(ERROR) << "event=proposer_failed" << Kv("error", drafts.status().ToString());
    return out;
  }
  CHECK_EQ(drafts->size(), queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    std::vector<int32_t>& d = (*drafts)[i];
    if (d.empty()) continue;
    if (static_cast<int64_t>(d.size()) > queries[i].max_drafts) d.resize(queries[i].max_drafts);
    out.emplace_back(queries[i].request->id, std::move(d));
  }
  return out;
}

void Speculator::Forget(uint64_t id) {
  acceptance_.erase(id);
  proposer_->Forget(id);
}

}  // namespace iquest
