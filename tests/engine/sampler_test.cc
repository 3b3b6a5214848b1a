// Sampler: exact logit processing, the support of top_k / top_p / min_p, the sampled
// distribution against the softmax (chi-square), seed determinism and logprobs.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>

namespace iquest {
namespace {

Request MakeRequest(SamplingParams params, std::vector<int32_t> prompt = {0},
                    std::vector<int32_t> output = {}) {
  Request r;
  r.sampling = std::move(params);
  if (!r.sampling.seed) r.sampling.seed = 1234;
  r.SetPrompt(std::move(prompt));
  r.token_ids.insert(r.token_ids.end(), output.begin(), output.end());
  r.eos_token_ids = {0};
  return r;
}

// Draws `num_draws` tokens at successive output positions and counts them.
std::map<int32_t, int> Histogram(const std::vector<float>& logits, const SamplingParams& params,
                                 int num_draws) {
  Sampler sampler;
  std::map<int32_t, int> counts;
  Request r = MakeRequest(params);
  for (int i = 0; i < num_draws; ++i) {
    r.token_ids.resize(static_cast<size_t>(r.prompt_len));
    r.token_ids.resize(static_cast<size_t>(r.prompt_len + i), 7);  // Position i; 7 has no effect.
    ++counts[sampler.Sample(logits, r, 0).token];
  }
  return counts;
}

TEST(SamplerTest, GreedyPicksTheLowestArgmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler;
  Request r = MakeRequest(p);
  EXPECT_EQ(sampler.Sample(std::vector<float>{1, 3, 3, 2}, r, 0).token, 1);
  p.temperature = -0.0f;  // Negative zero is zero: greedy.
  r = MakeRequest(p);
  EXPECT_EQ(sampler.Sample(std::vector<float>{1, 3, 5, 2}, r, 0).token, 2);
}

TEST(SamplerTest, DistributionMatchesSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
  SamplingParams p;
  p.temperature = 0.7f;
  const int draws = 40000;
  const auto counts = Histogram(logits, p, draws);
  double total = 0;
  std::vector<double> probs;
  for (float x : logits) total += std::exp(x / 0.7);
  for (float x : logits) probs.push_back(std::exp(x / 0.7) / total);
  double chi_square = 0;
  for (size_t t = 0; t < logits.size(); ++t) {
    const double expected = probs[t] * draws;
    const double observed =
        counts.count(static_cast<int32_t>(t)) ? counts.at(static_cast<int32_t>(t)) : 0;
    chi_square += (observed - expected) * (observed - expected) / expected;
  }
  EXPECT_LT(chi_square, 18.47);  // 4 degrees of freedom, p = 0.001.
}

TEST(SamplerTest, TopKTopPAndMinPRestrictTheSupport) {
  const std::vector<float> logits = {2.0f, 1.9f, 1.0f, 0.0f, -5.0f};
  SamplingParams top_k;
  top_k.top_k = 2;
  for (const auto& [token, n] : Histogram(logits, top_k, 2000)) EXPECT_LT(token, 2) << n;
  // Softmax: 0.41, 0.37, 0.15, 0.06, 0.0004: top_p 0.7 keeps tokens 0 and 1 only.
  SamplingParams top_p;
  top_p.top_p = 0.7f;
  for (const auto& [token, n] : Histogram(logits, top_p, 2000)) EXPECT_LT(token, 2) << n;
  // min_p 0.3: keep p >= 0.3 * 0.41 = 0.12: tokens 0, 1, 2.
  SamplingParams min_p;
  min_p.min_p = 0.3f;
  const auto counts = Histogram(logits, min_p, 4000);
  for (const auto& [token, n] : counts) EXPECT_LT(token, 3) << n;
  EXPECT_GT(counts.count(2), 0u);
  // top_p tiny: only the most likely survives.
  SamplingParams tiny;
  tiny.top_p = 1e-6f;
  EXPECT_EQ(Histogram(logits, tiny, 100).size(), 1u);
}

TEST(SamplerTest, PenaltiesAndBiasAreExact) {
  // Greedy over processed logits exposes the processing.
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;  // Seen tokens: positive /2, negative *2.
  Sampler sampler;
  // Token 1 (logit 3, seen) -> 1.5 < token 2 (logit 2, unseen).
  Request r = MakeRequest(p, {1}, {});
  EXPECT_EQ(sampler.Sample(std::vector<float>{-1, 3, 2}, r, 0).token, 2);
  SamplingParams f;
  f.temperature = 0.0f;
  f.frequency_penalty = 0.6f;  // Token 1 seen twice in the output: 3 - 1.2 = 1.8 < 2.
  r = MakeRequest(f, {5}, {1, 1});
  EXPECT_EQ(sampler.Sample(std::vector<float>{-1, 3, 2, 0, 0, 0}, r, 0).token, 2);
  f.frequency_penalty = 0.4f;  // 3 - 0.8 = 2.2 > 2.
  r = MakeRequest(f, {5}, {1, 1});
  EXPECT_EQ(sampler.Sample(std::vector<float>{-1, 3, 2, 0, 0, 0}, r, 0).token, 1);
  SamplingParams presence;
  presence.temperature = 0.0f;
  presence.presence_penalty = 1.5f;  // Once, whatever the count: 3 - 1.5 < 2.
  r = MakeRequest(presence, {5}, {1, 1, 1});
  EXPECT_EQ(sampler.Sample(std::vector<float>{-1, 3, 2, 0, 0, 0}, r, 0).token, 2);
  SamplingParams bias;
  bias.temperature = 0.0f;
  bias.logit_bias = {{0, 10.0f}};
  r = MakeRequest(bias);
  EXPECT_EQ(sampler.Sample(std::vector<float>{-1, 3, 2}, r, 0).token, 0);
}

TEST(SamplerTest, MinTokensMasksEosAndStopTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 2;
  p.stop_token_ids = {1};
  Sampler sampler;
  const std::vector<float> logits = {9, 8, 1};  // EOS (0) then stop token (1) are most likely.
  Request r = MakeRequest(p, {5}, {2});
  EXPECT_EQ(sampler.Sample(logits, r, 0).token, 2);
  r = MakeRequest(p, {5}, {2, 2});  // min_tokens reached.
  EXPECT_EQ(sampler.Sample(logits, r, 0).token, 0);
}

TEST(SamplerTest, SameSeedSameTokensWhateverTheBatch) {
  SamplingParams p;
  p.seed = 99;
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  Sampler first, second;
  Request a = MakeRequest(p);
  Request b = MakeRequest(p);
  for (int i = 0; i < 50; ++i) {
    const int32_t ta = first.Sample(logits, a, 0).token;
    // A different sampler that also served other requests in between.
    Request other = MakeRequest(SamplingParams{});
    second.Sample(logits, other, 0);
    const int32_t tb = second.Sample(logits, b, 0).token;
    EXPECT_EQ(ta, tb);
    a.token_ids.push_back(ta);
    b.token_ids.push_back(tb);
  }
  EXPECT_NE(Sampler::Uniform(99, 0, 3), Sampler::Uniform(99, 1, 3));  // Samples differ by index.
}

TEST(SamplerTest, LogprobsAreLogSoftmaxOfRawLogits) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = 2;
  p.logit_bias = {{2, 100.0f}};  // Changes the choice but not the reported logprobs.
  Sampler sampler;
  Request r = MakeRequest(p);
  const SampledToken s = sampler.Sample(std::vector<float>{1.0f, 2.0f, 0.0f}, r, 0);
  const double log_total = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.0));
  EXPECT_EQ(s.token, 2);
  EXPECT_NEAR(s.logprob, 0.0 - log_total, 1e-6);
  ASSERT_EQ(s.top_logprobs.size(), 2u);
  EXPECT_EQ(s.top_logprobs[0].token, 1);
  EXPECT_NEAR(s.top_logprobs[0].logprob, 2.0 - log_total, 1e-6);
  EXPECT_EQ(s.top_logprobs[1].token, 0);
}

TEST(SamplerTest, ExpNonPositiveIsWithinFourUlpOfDoubleExp) {
  double worst = 0.0;
  for (float x = 0.0f; x >= -87.0f; x -= 0.000731f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(ExpNonPositive(x) - exact) / exact);
  }
  EXPECT_LE(worst, 4 * 0x1.0p-24);  // 4 ulp relative (float's unit roundoff is 2^-24).
  EXPECT_EQ(ExpNonPositive(0.0f), 1.0f);
  EXPECT_LE(ExpNonPositive(-1000.0f), 2e-38f);
  EXPECT_LE(ExpNonPositive(-std::numeric_limits<float>::infinity()), 2e-38f);
}

TEST(SamplerTest, LogSumExpMatchesFloat64OnAVocabulary) {
  // 128256 entries (Llama 3's vocabulary, not a multiple of the 16 lanes plus a tail), at logit
  // scales from flat to peaked, with -inf entries (a banned token) mixed in.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float scale : {0.01f, 1.0f, 8.0f, 40.0f}) {
    std::vector<float> logits(128256 + 7);
    for (float& x : logits) x = scale * normal(rng);
    logits[17] = -std::numeric_limits<float>::infinity();
    double max_logit = -std::numeric_limits<double>::infinity();
    for (float x : logits) max_logit = std::max(max_logit, static_cast<double>(x));
    double sum = 0.0;
    for (float x : logits) sum += std::exp(static_cast<double>(x) - max_logit);
    EXPECT_NEAR(LogSumExp(logits), max_logit + std::log(sum), 1e-6) << "scale " << scale;
  }
}

}  // namespace
}  // namespace iquest
