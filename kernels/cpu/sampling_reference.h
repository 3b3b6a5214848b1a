// The exact definition of one filtered draw (temperature -> top_k -> top_p -> min_p -> draw), in
// double precision: the function the device sampler (kernels/cuda/sampling.cu, SampleTokens)
// must match, row by row. It depends only on the standard library and common/check.h, because
// tools/gpu_check links it with nvcc alone. It is a specification, not a fast path: O(V log V).
//
// With l the logits (NaN counts as -inf), m = max_i l_i (must be finite) and T the temperature:
//   p_i    = exp((l_i - m) / T)            (so p_max = 1; -inf logits have p = 0)
//   top_k  (0 < k < V): keep tokens whose logit is >= the k-th largest logit (ties all kept).
//   top_p  (< 1): sort the survivors by p descending; the smallest prefix whose mass reaches
//          top_p * (mass of the survivors) ends at some token; keep every survivor whose p is
//          >= that token's p (ties kept).
//   min_p  (> 0): keep survivors with p >= min_p * p_max (= min_p).
//   draw:  target = uniform * (sum of kept p); walk the kept tokens in INDEX order accumulating
//          p; the first index whose running sum exceeds target is the token (if rounding leaves
//          none, the last kept token with p > 0).
// The most likely token always survives every filter, so the kept mass is >= 1. Greedy
// (temperature 0) is the caller's business (Argmax), not this function's.
#pragma once

#include <cstdint>
#include <span>

namespace iquest::cpu {

// One row's sampling parameters. kernels/cuda/cuda_ops.h's SamplingRowParams has the same
// fields, meanings and layout.
struct SamplingRow {
  float temperature = 1.0f;  // > 0 (CHECKed)
  int32_t top_k = 0;         // 0 = off; >= vocab = off; < 0 is invalid (CHECKed)
  float top_p = 1.0f;        // in (0, 1]; 1 = off
  float min_p = 0.0f;        // in [0, 1]; 0 = off
  float uniform = 0.0f;      // the row's random draw in [0, 1)
};

// The token and how far each decision was from flipping. A device computing the same function
// with relative errors below a margin makes the same decision; the GPU check uses them to tell
// a kernel bug from a draw that landed on a boundary. Each margin is +inf when the filter is off.
struct SampleTrace {
  int32_t token = 0;
  int64_t num_kept = 0;  // Tokens that survived every filter (including p == 0 ones).
  // top_p: with A the survivors' mass strictly above the threshold token's p and B that mass
  // including the threshold's ties, min(top_p * S - A, B - top_p * S) / S (S: survivors' mass).
  double top_p_margin = 0;
  // min_p: min over the survivors of top_k/top_p of |p_i - min_p| / min_p.
  double min_p_margin = 0;
  // The draw: min(target - R_before, R_token - target) / kept mass, R the running sums in
  // index order around the chosen token.
  double draw_margin = 0;

  double MinMargin() const;
};

// Parameters are CHECKed (temperature > 0 and finite, top_k >= 0, top_p in (0, 1], min_p in
// [0, 1], uniform in [0, 1)), and so are the logits: non-empty, at least one finite, no +inf.
//   logits: f32 [vocab]
SampleTrace SampleTokenTraced(std::span<const float> logits, const SamplingRow& row);
int32_t SampleTokenReference(std::span<const float> logits, const SamplingRow& row);

}  // namespace iquest::cpu
