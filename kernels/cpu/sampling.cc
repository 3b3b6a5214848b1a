#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "common/check.h"

namespace iquest::cpu {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// GCC/Clang vector extensions: 4 float lanes, one SSE2 register on baseline x86-64 (wider
// vectors would change the calling convention of these helpers without AVX). Written with them
// because GCC does not vectorize these reductions or the clamp as plain loops without -ffast-math.
using Floats = float __attribute__((vector_size(16)));
using Ints = int32_t __attribute__((vector_size(16)));
using Doubles = double __attribute__((vector_size(32)));
constexpr size_t kLanes = 4;

Floats Splat(float value) { return Floats{} + value; }

Floats Load(const float* x) {
  Floats v;
  std::memcpy(&v, x, sizeof(v));
  return v;
}

// Lanes [0, count) of x, -inf past them (the neutral element of both max and exp-sum).
Floats LoadPartial(const float* x, size_t count) {
  Floats v = Splat(kNegativeInfinity);
  std::memcpy(&v, x, count * sizeof(float));
  return v;
}

Floats ExpNonPositive(Floats x) {
  // Below -87, exp(x) < 1.7e-38 is under float's normal range; such terms never matter beside
  // the 1 that the maximum itself contributes to a softmax sum.
  x = x < -87.0f ? Splat(-87.0f) : x;
  // x = n ln2 + r with n integral and |r| <= ln2 / 2; ln2 is split in a part exact in float
  // times any n here, plus the rest. Adding 1.5 * 2^23 rounds to the nearest integer.
  const Floats n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  const Floats r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  // Cephes expf: e^r = 1 + r + r^2 P(r) on [-ln2/2, ln2/2].
  Floats poly = Splat(1.9875691500e-4f);
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const Floats e_r = poly * r * r + r + 1.0f;
  // 2^n from its exponent bits; n is in [-126, 0], so the result is a normal float.
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;
  return e_r * __builtin_bit_cast(Floats, bits);
}

}  // namespace

float ExpNonPositive(float x) { return ExpNonPositive(Splat(x))[0]; }

double LogSumExp(std::span<const float> logits) {
  const float* x = logits.data();
  const size_t size = logits.size();
  const size_t body = size / kLanes * kLanes;
  const Floats tail = LoadPartial(x + body, size - body);
  Floats lane_max = tail;
  for (size_t i = 0; i < body; i += kLanes) {
    const Floats v = Load(x + i);
    lane_max = v > lane_max ? v : lane_max;
  }
  float max_logit = kNegativeInfinity;
  for (size_t j = 0; j < kLanes; ++j) max_logit = std::max(max_logit, lane_max[j]);
  // Terms in float (each within a few ulp), sums in double.
  Doubles lane_sum = __builtin_convertvector(ExpNonPositive(tail - max_logit), Doubles);
  for (size_t i = 0; i < body; i += kLanes) {
    lane_sum += __builtin_convertvector(ExpNonPositive(Load(x + i) - max_logit), Doubles);
  }
  double sum = 0.0;
  for (size_t j = 0; j < kLanes; ++j) sum += lane_sum[j];
  return max_logit + std::log(sum);
}

int32_t TokenDrawer::Draw(std::span<const float> scores, const DrawParams& p, double uniform) {
  if (p.temperature <= 0.0f) {
    // The first maximum: lowest id on ties.
    return static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
  }
  const size_t vocab = scores.size();
  if ((p.top_k <= 0 || static_cast<size_t>(p.top_k) >= vocab) && p.top_p >= 1.0f &&
      p.min_p <= 0.0f) {
    return DrawUnfiltered(scores, p, uniform);
  }
  return DrawFiltered(scores, p, uniform);
}

int32_t TokenDrawer::DrawFiltered(std::span<const float> scores, const DrawParams& p,
                                  double uniform) {
  const size_t vocab = scores.size();
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
  };
  size_t kept = vocab;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < vocab) {
    kept = static_cast<size_t>(p.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(kept),
                      order_.end(), more_likely);
  } else {
    std::sort(order_.begin(), order_.end(), more_likely);
  }
  // Softmax over the kept candidates, at the given temperature, most likely first.
  const double max_score = scores[order_[0]] / p.temperature;
  std::vector<double> probs(kept);
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    probs[i] = std::exp(scores[order_[i]] / p.temperature - max_score);
    total += probs[i];
  }
  // top_p: the smallest prefix whose mass reaches top_p; min_p: drop tokens below
  // min_p x the top probability. The most likely token always survives.
  double cumulative = 0.0;
  size_t cut = kept;
  for (size_t i = 0; i < kept; ++i) {
    if (i > 0 && probs[i] < p.min_p * probs[0]) {
      cut = i;
      break;
    }
    cumulative += probs[i] / total;
    if (cumulative >= p.top_p) {
      cut = i + 1;
      break;
    }
  }
  double mass = 0.0;
  for (size_t i = 0; i < cut; ++i) mass += probs[i];
  const double target = uniform * mass;
  double running = 0.0;
  for (size_t i = 0; i < cut; ++i) {
    running += probs[i];
    if (target < running) return order_[i];
  }
  return order_[cut - 1];
}

// No candidate is dropped, so no order is needed: the inverse CDF is walked in token-id order.
// (Sorting a 128k vocabulary per token cost more than the forward pass of a 1B model's batch.)
int32_t TokenDrawer::DrawUnfiltered(std::span<const float> scores, const DrawParams& p,
                                    double uniform) {
  const size_t vocab = scores.size();
  float max_score = kNegativeInfinity;
  for (float x : scores) max_score = std::max(max_score, x);
  const double inv_temperature = 1.0 / p.temperature;
  probs_.resize(vocab);
  double total = 0.0;
  for (size_t i = 0; i < vocab; ++i) {
    probs_[i] = std::exp((static_cast<double>(scores[i]) - max_score) * inv_temperature);
    total += probs_[i];
  }
  const double target = uniform * total;
  double running = 0.0;
  int32_t last_possible = 0;
  for (size_t i = 0; i < vocab; ++i) {
    if (probs_[i] <= 0.0) continue;
    last_possible = static_cast<int32_t>(i);
    running += probs_[i];
    if (target < running) return static_cast<int32_t>(i);
  }
  return last_possible;  // Rounding left target at the very end of the mass.
}

void SampleRows(TensorView logits, std::span<const SampleRow> rows, std::span<SampledId> out,
                TokenDrawer& drawer) {
  CHECK(logits.dtype() == DType::kF32) << DTypeName(logits.dtype());
  CHECK_EQ(rows.size(), out.size());
  const int64_t vocab = logits.dim(1);
  const float* data = logits.as<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    const SampleRow& r = rows[i];
    CHECK(r.logits_row >= 0 && r.logits_row < logits.dim(0)) << r.logits_row;
    const std::span<const float> row(data + r.logits_row * vocab, static_cast<size_t>(vocab));
    out[i].token = drawer.Draw(row, {r.temperature, r.top_k, r.top_p, r.min_p}, r.uniform);
    out[i].logprob = static_cast<float>(row[static_cast<size_t>(out[i].token)] - LogSumExp(row));
  }
}

}  // namespace iquest::cpu
