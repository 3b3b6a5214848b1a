#include "engine/sampler.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "common/check.h"

namespace iquest {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

uint64_t Mix(uint64_t x) {  // SplitMix64 finaliser.
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

PositionLogprobs ComputeLogprobs(std::span<const float> logits, int32_t token, int32_t k) {
  const double log_total = LogSumExp(logits);
  PositionLogprobs out;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(token)] - log_total);
  if (k <= 0) return out;
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  const size_t top = std::min(static_cast<size_t>(k), ids.size());
  std::partial_sort(
      ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(top), ids.end(),
      [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
  for (size_t i = 0; i < top; ++i) {
    out.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - log_total)});
  }
  return out;
}

double Sampler::Uniform(uint64_t seed, int32_t sample_index, int64_t position) {
  const uint64_t x = Mix(
      Mix(seed) ^ Mix(static_cast<uint64_t>(sample_index) << 32 ^ static_cast<uint64_t>(position)));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

void Sampler::ApplyLogitProcessors(const Request& request, std::span<const int32_t> pending) {
  const SamplingParams& p = request.sampling;
  const int64_t vocab = static_cast<int64_t>(scores_.size());
  for (const auto& [token, bias] : p.logit_bias) {
    if (token >= 0 && token < vocab) scores_[token] += bias;
  }
  if (p.repetition_penalty != 1.0f) {
    // HF/vLLM: tokens seen in prompt or output are made less likely, whatever their sign.
    std::vector<bool> seen(static_cast<size_t>(vocab), false);
    for (int64_t i = 0; i < request.num_tokens(); ++i) seen[request.token(i)] = true;
    for (int32_t t : pending) seen[t] = true;
    for (int64_t t = 0; t < vocab; ++t) {
      if (!seen[t]) continue;
      scores_[t] =
          scores_[t] > 0 ? scores_[t] / p.repetition_penalty : scores_[t] * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    counts_.assign(static_cast<size_t>(vocab), 0);
    for (int32_t t : request.output_token_ids()) ++counts_[t];
    for (int32_t t : pending) ++counts_[t];
    for (int64_t t = 0; t < vocab; ++t) {
      if (counts_[t] == 0) continue;
      scores_[t] -= p.frequency_penalty * static_cast<float>(counts_[t]) + p.presence_penalty;
    }
  }
  if (request.num_output_tokens() + static_cast<int64_t>(pending.size()) < p.min_tokens) {
    auto mask = [&](int32_t t) {
      if (t >= 0 && t < vocab) scores_[t] = kNegativeInfinity;
    };
    if (!p.ignore_eos) {
      for (int32_t t : request.eos_token_ids) mask(t);
    }
    for (int32_t t : p.stop_token_ids) mask(t);
  }
}

bool Sampler::ApplyConstraint(const Request& request, const TokenConstraint& constraint) {
  const TokenMask& mask = *constraint.mask;
  const int64_t vocab = static_cast<int64_t>(scores_.size());
  const int64_t masked_vocab = std::min<int64_t>(vocab, static_cast<int64_t>(mask.size()) * 64);
  // EOS and stop tokens are no text: allowed exactly where the grammar may end.
  std::vector<std::pair<int32_t, float>> stops;
  if (constraint.allow_stop) {
    auto keep = [&](int32_t t) {
      if (t >= 0 && t < vocab) stops.emplace_back(t, scores_[t]);
    };
    if (!request.sampling.ignore_eos) {
      for (int32_t t : request.eos_token_ids) keep(t);
    }
    for (int32_t t : request.sampling.stop_token_ids) keep(t);
  }
  bool any = false;
  for (int64_t word = 0; word * 64 < masked_vocab; ++word) {
    const uint64_t bits = mask[static_cast<size_t>(word)];
    const int64_t end = std::min<int64_t>(masked_vocab, (word + 1) * 64);
    if (bits == ~uint64_t{0} && end - word * 64 == 64) {
      any = true;
      continue;
    }
    for (int64_t t = word * 64; t < end; ++t) {
      if (!((bits >> (t & 63)) & 1)) scores_[t] = kNegativeInfinity;
    }
    any = any || bits != 0;
  }
  for (int64_t t = masked_vocab; t < vocab; ++t) scores_[t] = kNegativeInfinity;
  for (const auto& [t, score] : stops) {
    scores_[t] = score;
    any = any || score != kNegativeInfinity;
  }
  return any;
}

bool Sampler::NeedsHostLogits(const Request& request, int64_t num_pending) {
  const SamplingParams& p = request.sampling;
  const bool masks_stops =
      request.num_output_tokens() + num_pending < p.min_tokens &&
      (!p.stop_token_ids.empty() || (!p.ignore_eos && !request.eos_token_ids.empty()));
  return !p.logit_bias.empty() || p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
         p.frequency_penalty != 0.0f || masks_stops || p.logprobs > 0 || p.grammar != nullptr;
}

SampleRow Sampler::BackendRow(const Request& request, int32_t sample_index, int64_t logits_row,
                              int64_t num_pending) {
  const SamplingParams& p = request.sampling;
  CHECK(p.seed.has_value()) << "the engine assigns a seed before sampling";
  SampleRow row;
  row.logits_row = logits_row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.uniform = Uniform(*p.seed, sample_index, request.num_output_tokens() + num_pending);
  return row;
}

SampledToken Sampler::Sample(std::span<const float> logits, const Request& request,
                             int32_t sample_index, const TokenConstraint* constraint,
                             std::span<const int32_t> pending) {
  const SamplingParams& p = request.sampling;
  CHECK(p.seed.has_value()) << "the engine assigns a seed before sampling";
  scores_.assign(logits.begin(), logits.end());
  ApplyLogitProcessors(request, pending);
  SampledToken out;
  if (constraint != nullptr && constraint->mask != nullptr &&
      !ApplyConstraint(request, *constraint)) {
    // Nothing is possible (a grammar dead end): any token; the engine ends the request.
    out.token = request.eos_token_ids.empty() ? 0 : request.eos_token_ids[0];
    out.logprob = ComputeLogprobs(logits, out.token, 0).logprob;
    return out;
  }
  const int64_t position = request.num_output_tokens() + static_cast<int64_t>(pending.size());
  const double uniform = p.temperature <= 0.0f ? 0.0 : Uniform(*p.seed, sample_index, position);
  out.token = drawer_.Draw(scores_, {p.temperature, p.top_k, p.top_p, p.min_p}, uniform);
  PositionLogprobs logprobs = ComputeLogprobs(logits, out.token, p.logprobs);
  out.logprob = logprobs.logprob;
  out.top_logprobs = std::move(logprobs.top);
  return out;
}

}  // namespace iquest
