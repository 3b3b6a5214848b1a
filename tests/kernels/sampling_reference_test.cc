// The CPU definition of a filtered draw (kernels/cpu/sampling_reference.h), which the device
// sampler is checked against, tested here against brute-force definitions written independently:
// survival by counting (top_k: fewer than k logits strictly above; top_p: the survivors' mass
// strictly above p_i is below top_p of theirs; min_p: p_i >= min_p), then the inverse CDF of the
// renormalised kept probabilities in index order.
#include "kernels/cpu/sampling_reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace iquest::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The kept tokens' probabilities renormalised to sum 1 (0 for dropped tokens), by counting.
std::vector<double> BruteForceKept(const std::vector<float>& logits, const SamplingRow& row) {
  const size_t n = logits.size();
  std::vector<double> l(n);
  double max_logit = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    l[i] = std::isnan(logits[i]) ? -INFINITY : logits[i];
    if (l[i] > max_logit) max_logit = l[i];
  }
  std::vector<double> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = std::exp((l[i] - max_logit) / row.temperature);
  std::vector<bool> keep(n, true);
  if (row.top_k > 0) {
    for (size_t i = 0; i < n; ++i) {
      int64_t strictly_above = 0;
      for (size_t j = 0; j < n; ++j) strictly_above += l[j] > l[i];
      keep[i] = strictly_above < row.top_k;
    }
  }
  if (row.top_p < 1.0f) {
    double survivors = 0.0;
    for (size_t j = 0; j < n; ++j) survivors += keep[j] ? p[j] : 0.0;
    std::vector<bool> next = keep;
    for (size_t i = 0; i < n; ++i) {
      double above = 0.0;
      for (size_t j = 0; j < n; ++j) above += (keep[j] && p[j] > p[i]) ? p[j] : 0.0;
      next[i] = keep[i] && above < row.top_p * survivors;
    }
    keep = next;
  }
  if (row.min_p > 0.0f) {
    for (size_t i = 0; i < n; ++i) keep[i] = keep[i] && p[i] >= row.min_p;
  }
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += keep[i] ? p[i] : 0.0;
  std::vector<double> q(n, 0.0);
  for (size_t i = 0; i < n; ++i) q[i] = keep[i] ? p[i] / total : 0.0;
  return q;
}

// The token at `uniform` of the inverse CDF of q in index order; -1 when uniform lies within
// `guard` of a bucket boundary (rounding may decide either way there).
int32_t BruteForceDraw(const std::vector<double>& q, double uniform, double guard = 1e-9) {
  double running = 0.0;
  for (size_t i = 0; i < q.size(); ++i) {
    if (q[i] <= 0.0) continue;
    const double before = running;
    running += q[i];
    if (uniform < running) {
      if (uniform - before < guard || running - uniform < guard) return -1;
      return static_cast<int32_t>(i);
    }
  }
  return -1;
}

int32_t Draw(const std::vector<float>& logits, SamplingRow row, float uniform) {
  row.uniform = uniform;
  return SampleTokenReference(logits, row);
}

// Every token of `q` drawn for uniforms spread evenly over [0, 1).
void ExpectMatchesBruteForce(const std::vector<float>& logits, const SamplingRow& row) {
  const std::vector<double> q = BruteForceKept(logits, row);
  for (int s = 0; s < 64; ++s) {
    const float uniform = (static_cast<float>(s) + 0.37f) / 64.0f;
    const int32_t expected = BruteForceDraw(q, uniform);
    if (expected < 0) continue;
    EXPECT_EQ(Draw(logits, row, uniform), expected)
        << "u=" << uniform << " k=" << row.top_k << " p=" << row.top_p << " min_p=" << row.min_p
        << " T=" << row.temperature;
  }
}

TEST(SamplingReferenceTest, NoFilterIsTheSoftmaxInverseCdf) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -3.0f};
  ExpectMatchesBruteForce(logits, SamplingRow{});
  ExpectMatchesBruteForce(logits, SamplingRow{.temperature = 0.3f});
  ExpectMatchesBruteForce(logits, SamplingRow{.temperature = 4.0f});
}

TEST(SamplingReferenceTest, EachFilterAloneMatchesBruteForce) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -3.0f, 1.0f, 0.25f};
  for (int32_t k = 1; k <= 10; ++k) ExpectMatchesBruteForce(logits, SamplingRow{.top_k = k});
  for (float top_p : {0.01f, 0.2f, 0.5f, 0.7f, 0.9f, 0.99f}) {
    ExpectMatchesBruteForce(logits, SamplingRow{.top_p = top_p});
  }
  for (float min_p : {0.01f, 0.1f, 0.3f, 0.6f, 0.95f}) {
    ExpectMatchesBruteForce(logits, SamplingRow{.min_p = min_p});
  }
}

TEST(SamplingReferenceTest, RandomRowsMatchBruteForce) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::uniform_int_distribution<int> small_int(-3, 3);
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + trial % 37;
    std::vector<float> logits(n);
    const bool with_ties = trial % 3 == 0;
    for (float& x : logits) x = with_ties ? static_cast<float>(small_int(rng)) : value(rng);
    if (trial % 5 == 0 && n > 1) logits[trial % n] = kNegInf;
    SamplingRow row;
    row.temperature = std::array<float, 4>{0.25f, 0.7f, 1.0f, 2.5f}[trial % 4];
    if (trial % 2 == 0) row.top_k = 1 + static_cast<int32_t>(rng() % (n + 2));
    if (trial % 3 != 2) row.top_p = 0.05f + 0.9f * static_cast<float>(rng() % 1000) / 1000.0f;
    if (trial % 4 >= 2) row.min_p = 0.5f * static_cast<float>(rng() % 1000) / 1000.0f;
    ExpectMatchesBruteForce(logits, row);
  }
}

TEST(SamplingReferenceTest, TopKKeepsEveryTieAtTheThreshold) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f};
  const SamplingRow row{.top_k = 2};  // The 2nd largest is 3: all three 3s stay, equally likely.
  EXPECT_EQ(Draw(logits, row, 0.0f), 1);
  EXPECT_EQ(Draw(logits, row, 0.32f), 1);
  EXPECT_EQ(Draw(logits, row, 0.34f), 2);
  EXPECT_EQ(Draw(logits, row, 0.5f), 2);
  EXPECT_EQ(Draw(logits, row, 0.67f), 4);
  EXPECT_EQ(Draw(logits, row, 0.999f), 4);
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.top_k = 2}).num_kept, 3);
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.top_k = 4}).num_kept, 4);
}

TEST(SamplingReferenceTest, TopKOfAtLeastTheVocabularyIsOff) {
  const std::vector<float> logits = {0.1f, 0.7f, -0.4f, 0.2f};
  for (int s = 0; s < 50; ++s) {
    const float u = static_cast<float>(s) / 50.0f;
    const int32_t unfiltered = Draw(logits, SamplingRow{}, u);
    EXPECT_EQ(Draw(logits, SamplingRow{.top_k = 4}, u), unfiltered);
    EXPECT_EQ(Draw(logits, SamplingRow{.top_k = 100}, u), unfiltered);
    EXPECT_EQ(Draw(logits, SamplingRow{.top_k = 0}, u), unfiltered);
  }
}

TEST(SamplingReferenceTest, TopPOneAndMinPZeroAreOff) {
  const std::vector<float> logits = {0.1f, 0.7f, -9.0f, 0.2f, -30.0f};
  const SamplingRow off{.top_p = 1.0f, .min_p = 0.0f};
  EXPECT_EQ(SampleTokenTraced(logits, off).num_kept, 5);
  EXPECT_TRUE(std::isinf(SampleTokenTraced(logits, off).top_p_margin));
  EXPECT_TRUE(std::isinf(SampleTokenTraced(logits, off).min_p_margin));
  ExpectMatchesBruteForce(logits, off);
}

TEST(SamplingReferenceTest, TopPKeepsTiesOfTheLastTokenOfThePrefix) {
  // p = {1, 1/2, 1, 1/2}: mass 3. Any top_p <= 2/3 is reached inside the group of the two 1s,
  // so both stay even though one alone may reach it.
  const float ln2 = static_cast<float>(std::log(2.0));
  const std::vector<float> logits = {ln2, 0.0f, ln2, 0.0f};
  for (float top_p : {0.1f, 0.3f, 0.6f}) {
    const SampleTrace trace = SampleTokenTraced(logits, SamplingRow{.top_p = top_p});
    EXPECT_EQ(trace.num_kept, 2) << top_p;
    EXPECT_EQ(Draw(logits, SamplingRow{.top_p = top_p}, 0.49f), 0);
    EXPECT_EQ(Draw(logits, SamplingRow{.top_p = top_p}, 0.51f), 2);
  }
  // 0.7 needs mass 2.1 > 2: the next group (both halves) is needed, and kept whole.
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.top_p = 0.7f}).num_kept, 4);
}

TEST(SamplingReferenceTest, TopPIsRelativeToTheTopKSurvivors) {
  // p = {1, .9, .8, .7, .6}. top_k = 3 leaves mass 2.7; top_p = 0.5 needs 1.35: tokens 0 and 1.
  // Relative to the whole vocabulary (mass 4) it would need 2 and keep token 2 as well.
  std::vector<float> logits;
  for (double p : {1.0, 0.9, 0.8, 0.7, 0.6}) logits.push_back(static_cast<float>(std::log(p)));
  const SamplingRow row{.top_k = 3, .top_p = 0.5f};
  EXPECT_EQ(SampleTokenTraced(logits, row).num_kept, 2);
  EXPECT_EQ(Draw(logits, row, 0.99f), 1);
  ExpectMatchesBruteForce(logits, row);
}

TEST(SamplingReferenceTest, MinPIsRelativeToTheTopProbability) {
  // p = {1/8, 1, 1/2, 1/4} at T = 1.
  std::vector<float> logits;
  for (double p : {0.125, 1.0, 0.5, 0.25}) logits.push_back(static_cast<float>(std::log(p)));
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.min_p = 0.2f}).num_kept, 3);
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.min_p = 0.4f}).num_kept, 2);
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.min_p = 0.9f}).num_kept, 1);
  EXPECT_EQ(Draw(logits, SamplingRow{.min_p = 0.9f}, 0.99f), 1);
  // Kept {1, 2, 3} with masses 1, 1/2, 1/4 (sum 7/4): u = 0.6 -> target 1.05 -> token 2.
  EXPECT_EQ(Draw(logits, SamplingRow{.min_p = 0.2f}, 0.6f), 2);
  ExpectMatchesBruteForce(logits, SamplingRow{.min_p = 0.2f});
  // min_p = 1 keeps exactly the ties of the maximum.
  const std::vector<float> tied = {2.0f, 1.0f, 2.0f};
  EXPECT_EQ(SampleTokenTraced(tied, SamplingRow{.min_p = 1.0f}).num_kept, 2);
  EXPECT_EQ(Draw(tied, SamplingRow{.min_p = 1.0f}, 0.75f), 2);
}

TEST(SamplingReferenceTest, AllFiltersCombinedMatchBruteForce) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> logits(64);
    for (float& x : logits) x = normal(rng);
    const SamplingRow row{.temperature = 0.5f + 0.01f * static_cast<float>(trial),
                          .top_k = 1 + trial % 40,
                          .top_p = 0.3f + 0.006f * static_cast<float>(trial),
                          .min_p = 0.002f * static_cast<float>(trial)};
    ExpectMatchesBruteForce(logits, row);
  }
}

TEST(SamplingReferenceTest, NegativeInfinityAndNanAreNeverDrawn) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {kNegInf, 0.0f, nan, 0.0f, kNegInf};
  // top_k = 4: the 4th largest is -inf, so every token survives, but only p > 0 can be drawn.
  for (const SamplingRow& row : {SamplingRow{}, SamplingRow{.top_k = 4}, SamplingRow{.top_k = 2},
                                 SamplingRow{.top_p = 0.9f}, SamplingRow{.min_p = 0.5f}}) {
    EXPECT_EQ(Draw(logits, row, 0.0f), 1);
    EXPECT_EQ(Draw(logits, row, 0.49f), 1);
    EXPECT_EQ(Draw(logits, row, 0.51f), 3);
    EXPECT_EQ(Draw(logits, row, std::nextafter(1.0f, 0.0f)), 3);
  }
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{.top_k = 4}).num_kept, 5);
}

TEST(SamplingReferenceTest, DrawAtTheEndsOfTheUnitInterval) {
  const std::vector<float> logits = {-50.0f, 1.0f, 0.5f, 2.0f, -50.0f, 0.0f, -100.0f};
  const float almost_one = std::nextafter(1.0f, 0.0f);
  EXPECT_EQ(Draw(logits, SamplingRow{}, 0.0f), 0);  // p_0 = e^-52 > 0 is the first bucket.
  // p_6 = e^-102 is far narrower than the last float step below 1: the draw lands on token 5.
  EXPECT_EQ(Draw(logits, SamplingRow{}, almost_one), 5);
  EXPECT_EQ(Draw(logits, SamplingRow{.top_k = 4}, 0.0f), 1);
  EXPECT_EQ(Draw(logits, SamplingRow{.top_k = 4}, almost_one), 5);
  EXPECT_EQ(Draw(logits, SamplingRow{.min_p = 0.2f}, almost_one), 3);  // Kept: 1, 2, 3.
  // u = 0 sits on the left edge of the first bucket: the trace says so.
  EXPECT_EQ(SampleTokenTraced(logits, SamplingRow{}).draw_margin, 0.0);
}

TEST(SamplingReferenceTest, ExactBoundariesReportZeroMargin) {
  const std::vector<float> logits = {1.0f, 1.0f};
  const SampleTrace trace = SampleTokenTraced(logits, SamplingRow{.uniform = 0.5f});
  EXPECT_EQ(trace.token, 1);  // Running sum 1 does not exceed target 1.
  EXPECT_EQ(trace.MinMargin(), 0.0);
  const SampleTrace inside = SampleTokenTraced(logits, SamplingRow{.uniform = 0.25f});
  EXPECT_EQ(inside.token, 0);
  EXPECT_NEAR(inside.draw_margin, 0.25, 1e-12);
}

TEST(SamplingReferenceTest, MarginsFlagThresholdsOnTheEdge) {
  // p = {1, 1/2, 1/4}: mass 7/4. top_p = 4/7 needs mass 1, reached exactly by the first token.
  std::vector<float> logits;
  for (double p : {1.0, 0.5, 0.25}) logits.push_back(static_cast<float>(std::log(p)));
  const SampleTrace on_edge =
      SampleTokenTraced(logits, SamplingRow{.top_p = static_cast<float>(4.0 / 7.0)});
  EXPECT_LT(on_edge.top_p_margin, 1e-6);
  const SampleTrace inside = SampleTokenTraced(logits, SamplingRow{.top_p = 0.75f});
  // Needs 1.3125: reached by the second token (1.5), not by the first (1).
  EXPECT_NEAR(inside.top_p_margin, 0.1875 / 1.75, 1e-6);
  EXPECT_LT(SampleTokenTraced(logits, SamplingRow{.min_p = 0.5f}).min_p_margin, 1e-6);
  EXPECT_NEAR(SampleTokenTraced(logits, SamplingRow{.min_p = 0.4f}).min_p_margin, 0.25, 1e-6);
}

TEST(SamplingReferenceTest, TopKOneIsArgmaxForPeakedLogits) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits(1000);
    for (float& x : logits) x = normal(rng);
    const int32_t peak = static_cast<int32_t>(rng() % logits.size());
    logits[peak] = 25.0f;
    for (float u : {0.0f, 0.3f, 0.999f}) {
      EXPECT_EQ(Draw(logits, SamplingRow{.temperature = 0.7f, .top_k = 1}, u), peak);
      EXPECT_EQ(Draw(logits, SamplingRow{.temperature = 1.3f, .top_k = 1, .top_p = 0.5f}, u), peak);
    }
  }
}

// Stratified uniforms (s + 1/2) / N make the count of token i equal N q_i up to the two bucket
// ends; random uniforms must pass a chi-square test at a fixed seed. A wrong kept set or a
// missing renormalisation moves some count by far more than either bound.
TEST(SamplingReferenceTest, EmpiricalDistributionMatchesKeptProbabilities) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  const std::vector<SamplingRow> rows = {
      SamplingRow{}, SamplingRow{.temperature = 0.6f, .top_k = 7}, SamplingRow{.top_p = 0.8f},
      SamplingRow{.min_p = 0.08f},
      SamplingRow{.temperature = 1.4f, .top_k = 12, .top_p = 0.9f, .min_p = 0.02f}};
  for (const SamplingRow& row : rows) {
    std::vector<float> logits(24);
    for (float& x : logits) x = normal(rng);
    const std::vector<double> q = BruteForceKept(logits, row);
    constexpr int kStrata = 100000;
    std::vector<int64_t> counts(logits.size(), 0);
    for (int s = 0; s < kStrata; ++s) {
      ++counts[Draw(logits, row, (static_cast<float>(s) + 0.5f) / kStrata)];
    }
    for (size_t i = 0; i < q.size(); ++i) {
      EXPECT_NEAR(static_cast<double>(counts[i]), kStrata * q[i], 2.0) << "token " << i;
    }

    constexpr int kDraws = 200000;
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::fill(counts.begin(), counts.end(), 0);
    for (int s = 0; s < kDraws; ++s) {
      float u = uniform(rng);
      if (u >= 1.0f) u = 0.0f;
      ++counts[Draw(logits, row, u)];
    }
    double chi_square = 0.0;
    int degrees = -1;
    for (size_t i = 0; i < q.size(); ++i) {
      if (q[i] == 0.0) {
        EXPECT_EQ(counts[i], 0) << "dropped token " << i << " was drawn";
        continue;
      }
      const double expected = kDraws * q[i];
      chi_square += (counts[i] - expected) * (counts[i] - expected) / expected;
      ++degrees;
    }
    // Mean `degrees`, standard deviation sqrt(2 degrees): 6 deviations is a ~1e-6 false alarm.
    EXPECT_LT(chi_square, degrees + 6.0 * std::sqrt(2.0 * std::max(degrees, 1)) + 6.0);
  }
}

}  // namespace
}  // namespace iquest::cpu
