// Sampler: one token from one row of logits, for one sample of one request. A request's samples
// depend only on its seed and its own logits, never on its batch-mates: the random number for
// output position i of sample k is a pure function of (seed, k, i).
//
// Order of processing (as vLLM): logit_bias, repetition/presence/frequency penalties, the
// min_tokens mask, the structured-output mask (engine/constrained_decoding.h), then greedy
// (temperature 0) or temperature -> top_k -> top_p -> min_p -> draw (the CPU sampling rule,
// kernels/cpu/sampling.h). Logprobs are reported from the raw model logits (vLLM's default
// "raw_logprobs").
//
// A row that needs none of the processors and no top logprobs (NeedsHostLogits false) can be
// sampled where the logits are, by Backend::SampleTokens with BackendRow's parameters; on the
// CPU backends that is the same rule on the same numbers, so the token and logprob are the ones
// Sample would return.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/constrained_decoding.h"
#include "kernels/backend.h"
#include "kernels/cpu/sampling.h"
#include "scheduler/request.h"

namespace iquest {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;                    // Of the sampled token.
  std::vector<TokenLogprob> top_logprobs;  // sampling.logprobs entries, most likely first.
};

// The logprob of `token` and the `k` most likely tokens under log_softmax(`logits`).
struct PositionLogprobs {
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};
PositionLogprobs ComputeLogprobs(std::span<const float> logits, int32_t token, int32_t k);

// The vectorized log-sum-exp and exp of the CPU sampling rule (kernels/cpu/sampling.h).
using cpu::ExpNonPositive;
using cpu::LogSumExp;

class Sampler {
 public:
  // `logits`: f32 [vocab] of the position after request's last token, or, when verifying
  // speculative drafts, after its last token and then `pending` (the drafts before this row):
  // the row is sampled exactly as it would be once those tokens were the request's own (the
  // penalties count them, min_tokens and the random stream's position move past them), so a
  // request's tokens do not depend on whether it speculated. `sample_index` selects the random
  // stream (the request's own for n == 1; 0..n-1 when a prompt forks into n samples).
  // `constraint`: the structured-output mask of this row, if any.
  SampledToken Sample(std::span<const float> logits, const Request& request, int32_t sample_index,
                      const TokenConstraint* constraint = nullptr,
                      std::span<const int32_t> pending = {});

  // True when the row of `request` after `num_pending` drafts needs the full logits on the host:
  // a logit processor applies (bias, penalties, the min_tokens mask, a grammar) or top logprobs
  // are wanted.
  static bool NeedsHostLogits(const Request& request, int64_t num_pending = 0);
  // The backend-side equivalent of Sample for a row that does not NeedsHostLogits.
  static SampleRow BackendRow(const Request& request, int32_t sample_index, int64_t logits_row,
                              int64_t num_pending = 0);

  // Uniform in [0, 1) for (seed, sample_index, position). Exposed for tests.
  static double Uniform(uint64_t seed, int32_t sample_index, int64_t position);

 private:
  void ApplyLogitProcessors(const Request& request, std::span<const int32_t> pending);
  // Makes every token the constraint forbids impossible; false when it allows none.
  bool ApplyConstraint(const Request& request, const TokenConstraint& constraint);

  cpu::TokenDrawer drawer_;
  std::vector<float> scores_;    // Scratch: processed logits [vocab].
  std::vector<int32_t> counts_;  // Scratch: output token counts [vocab].
};

}  // namespace iquest
