// Speculator: speculative decoding's policy. After each step it records how many of every
// request's drafts the step accepted, and decides how many drafts each decoding request verifies
// next (its k), which the proposer then fills in (Scheduler::SetDrafts). The scheduler gives
// drafts only spare budget and free blocks; ModelRunner verifies them so that outputs keep the
// target model's distribution exactly (model_runner.h).
//
// Adaptive k. A step costs about a + b * N seconds for N tokens (fitted over recent decode-only
// steps by least squares with forgetting), and yields S tokens. One more draft for a request
// adds b seconds and is accepted with probability alpha^j (its j-th draft needs the j - 1 before
// it; alpha is the request's recent per-draft acceptance). It raises tokens per second iff
// alpha^j > b * S / T (S and T of the last decode-only step), so each request gets the largest k <=
// K with alpha^k above that threshold (and above kMinThreshold: for costs the fit cannot see, a
// draft needs a 5 % chance). Until the fit knows b (N must have varied), k is at most 1 and 2 on
// alternate steps, so that the first steps of a heavy batch do not verify K drafts per request
// at an unknown price, and N varies even when every request has a guess every step. At batch 1
// on a memory-bound step b * S / T is small and k stays near K while drafts are accepted; under a
// heavy batch (S / T near 1 / b) drafts stop paying and k falls to 0; with nothing accepted alpha
// falls and k with it. A request that stopped drafting probes with one draft after 2, 4, 8, ... 64
// steps (exponential backoff), so a text that turns repetitive is noticed and a hopeless one costs
// almost nothing; it does not probe while the threshold is above kMaxProbeThreshold (a heavy
// batch, where every request of the step would pay for the probe and even a sure draft barely
// pays).
//
// Engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/model_runner.h"
#include "engine/speculation/proposer.h"
#include "scheduler/scheduler.h"

namespace iquest {

enum class SpeculationMethod { kNone, kNgram, kDraft };

// "none", "ngram", "draft"; kInvalidArgument for anything else.
absl::StatusOr<SpeculationMethod> ParseSpeculationMethod(const std::string& name);
const char* SpeculationMethodName(SpeculationMethod method);

struct SpeculationConfig {
  SpeculationMethod method = SpeculationMethod::kNone;
  int32_t num_speculative_tokens = 4;  // K: at most this many drafts per request and step.
  int32_t ngram_min = 2;               // Prompt lookup: suffix lengths tried, longest first.
  int32_t ngram_max = 4;
  // Off: every decoding request with a proposal verifies K drafts (tests, benchmarks).
  bool adaptive = true;

  static constexpr int32_t kMaxSpeculativeTokens = 16;
  static constexpr int32_t kMaxNgram = 64;
  static constexpr double kMinThreshold = 0.05;
  static constexpr double kMaxProbeThreshold = 0.5;
  static constexpr int64_t kMaxBackoffSteps = 64;
  absl::Status Validate() const;
};

struct SpecDecodeCounters {
  int64_t num_drafts = 0;           // Verifications: request-steps with at least one draft.
  int64_t num_draft_tokens = 0;     // Drafts verified.
  int64_t num_accepted_tokens = 0;  // Drafts accepted.
  // [K]: entry i counts verifications whose draft i was accepted.
  std::vector<int64_t> accepted_per_position;
};

class Speculator {
 public:
  // Drafts never take a request past `max_model_len` tokens.
  Speculator(const SpeculationConfig& config, int64_t max_model_len,
             std::unique_ptr<Proposer> proposer);

  // After Scheduler::Update: the step's verifications (outputs in batch order).
  void Observe(const ScheduledBatch& batch, const std::vector<RequestStepOutput>& outputs);
  // The whole step's seconds (forward, sampling, proposals), after Observe.
  void ObserveStepTime(double seconds);
  // Drafts for `decoding` requests (running, decoding, speculation on): (id, drafts) for each
  // that gets some.
  std::vector<std::pair<uint64_t, std::vector<int32_t>>> Propose(
      const std::vector<const Request*>& decoding);
  void Forget(uint64_t id);

  const SpecDecodeCounters& counters() const { return counters_; }
  const SpeculationConfig& config() const { return config_; }
  const Proposer& proposer() const { return *proposer_; }
  // The current threshold alpha^j must pass (for tests and logs).
  double threshold() const;
  // The request's acceptance estimate (the prior for an unknown one).
  double acceptance(uint64_t id) const;

 private:
  struct Acceptance {
    double accepted = 1.0;  // Decayed counts, starting at the prior 1 / 2.
    double tried = 2.0;
    int64_t backoff = 0;  // Steps between probes while not drafting; 0 while drafting.
    int64_t wait = 0;     // Steps until the next probe.
    double rate() const { return accepted / tried; }
  };
  // The drafts request `r` may verify next: adaptive k, clipped by what the request has left.
  int64_t DraftsFor(const Request& r);

  SpeculationConfig config_;
  int64_t max_model_len_;
  std::unique_ptr<Proposer> proposer_;
  SpecDecodeCounters counters_;
  std::unordered_map<uint64_t, Acceptance> acceptance_;
  // The step-cost fit: decayed sums of w, N, T, N^2, N*T over decode-only steps.
  double sum_w_ = 0, sum_n_ = 0, sum_t_ = 0, sum_nn_ = 0, sum_nt_ = 0;
  double seconds_per_token_ = 0;  // b of the fit (0 until N has varied)...
  bool cost_known_ = false;       // ...which it has.
  int64_t num_steps_ = 0;         // Steps observed.
  // The last step: its tokens, tokens it yielded, and whether it was decode-only; the last
  // decode-only step's yield and seconds (S and T of the threshold).
  int64_t last_num_tokens_ = 0;
  int64_t last_yield_ = 0;
  bool last_decode_only_ = false;
  int64_t decode_yield_ = 0;
  double decode_seconds_ = 0;
};

}  // namespace iquest
