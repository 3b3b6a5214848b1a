// The CPU sampling rule: one token from one row of (processed) logits. One definition, used by
// the engine's host sampler (engine/sampler.h, after its logit processors) and by the CPU
// backends' SampleTokens (rows that need no processor), so a request's tokens are the same
// whichever path its row takes.
//
// Greedy (temperature <= 0): the first maximum (lowest id on ties). Otherwise
// p_i = exp((s_i - max) / T); top_k keeps the k most likely (ties broken by lower id); top_p
// keeps the smallest most-likely-first prefix whose mass reaches top_p of the kept mass; min_p
// drops tokens below min_p x the top probability (the most likely token always survives). The
// draw walks the inverse CDF at `uniform`: in token-id order when no filter is on, most likely
// first when one is.
//
// The CUDA kernel (kernels/cuda/sampling.cu) is specified by kernels/cpu/sampling_reference.h
// instead: it walks the kept tokens in id order and keeps ties at the top_k and top_p
// thresholds. Both draw from the same filtered distribution (up to ties); seeded streams are
// reproducible per backend, as logits are.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace iquest::cpu {

struct DrawParams {
  float temperature = 1.0f;  // <= 0: greedy.
  int32_t top_k = 0;         // 0 (or >= vocab): off.
  float top_p = 1.0f;        // 1: off.
  float min_p = 0.0f;        // 0: off.
};

// Holds scratch between draws (a vocabulary-sized order and probabilities); not thread-safe.
class TokenDrawer {
 public:
  //   scores: f32 [vocab]; uniform in [0, 1)
  int32_t Draw(std::span<const float> scores, const DrawParams& params, double uniform);

 private:
  int32_t DrawFiltered(std::span<const float> scores, const DrawParams& params, double uniform);
  int32_t DrawUnfiltered(std::span<const float> scores, const DrawParams& params, double uniform);

  std::vector<int32_t> order_;  // Candidate token ids.
  std::vector<double> probs_;   // Unnormalised probabilities.
};

// log(sum(exp(logits))), stable (shifted by the maximum); -inf entries add nothing. The terms
// are float exponentials summed in double: a 128k vocabulary costs ~0.1 ms, not the ~1 ms of a
// double exp per entry that used to serialize batched decode (tests: against float64).
double LogSumExp(std::span<const float> logits);

// exp(x) for x <= 0 (x < -87 counts as -87), within a few float ulp, written without calls or
// branches so that loops over it vectorize.
float ExpNonPositive(float x);

// Backend::SampleTokens for logits in host memory: each row drawn by the rule above from the raw
// logits, with the token's logprob under their log_softmax.
//   logits: f32 [N, vocab]; out: [rows.size()]
void SampleRows(TensorView logits, std::span<const SampleRow> rows, std::span<SampledId> out,
                TokenDrawer& drawer);

}  // namespace iquest::cpu
