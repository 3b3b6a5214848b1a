// Sampler: one token from one row of logits, for one sample of one request. A request's samples
// depend only on its seed and its own logits, never on its batch-mates: the random number for
// output position i of sample k is a pure function of (seed, k, i).
//
// Order of processing (as vLLM): logit_bias, repetition/presence/frequency penalties, the
// min_tokens mask, then greedy (temperature 0) or temperature -> top_k -> top_p -> min_p ->
// draw. Logprobs are reported from the raw model logits (vLLM's default "raw_logprobs").
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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

// log(sum(exp(logits))), stable (shifted by the maximum); -inf entries add nothing. The terms
// are float exponentials summed in double: a 128k vocabulary costs ~0.1 ms, not the ~1 ms of a
// double exp per entry that used to serialize batched decode (tests: against float64).
double LogSumExp(std::span<const float> logits);

// exp(x) for x <= 0 (x < -87 counts as -87), within a few float ulp, written without calls or
// branches so that loops over it vectorize.
float ExpNonPositive(float x);

class Sampler {
 public:
  // `logits`: f32 [vocab] of the position after request's last token. `sample_index` selects the
  // random stream (the request's own for n == 1; 0..n-1 when a prompt forks into n samples).
  SampledToken Sample(std::span<const float> logits, const Request& request, int32_t sample_index);

  // Uniform in [0, 1) for (seed, sample_index, position). Exposed for tests.
  static double Uniform(uint64_t seed, int32_t sample_index, int64_t position);

 private:
  void ApplyLogitProcessors(const Request& request);
  int32_t Draw(const SamplingParams& params, double uniform);
  int32_t DrawUnfiltered(const SamplingParams& params, double uniform);

  std::vector<float> scores_;    // Scratch: processed logits [vocab].
  std::vector<int32_t> order_;   // Scratch: candidate token ids.
  std::vector<double> probs_;    // Scratch: unnormalised probabilities [vocab].
  std::vector<int32_t> counts_;  // Scratch: output token counts [vocab].
};

}  // namespace iquest
