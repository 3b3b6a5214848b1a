#include "kernels/cpu/sampling_reference.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "common/check.h"

namespace iquest::cpu {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

}  // namespace

double SampleTrace::MinMargin() const {
  return std::min({top_p_margin, min_p_margin, draw_margin});
}

SampleTrace SampleTokenTraced(std::span<const float> logits, const SamplingRow& row) {
  const size_t vocab = logits.size();
  CHECK_GT(vocab, 0u);
  CHECK(row.temperature > 0.0f && std::isfinite(row.temperature)) << row.temperature;
  CHECK_GE(row.top_k, 0);
  CHECK(row.top_p > 0.0f && row.top_p <= 1.0f) << row.top_p;
  CHECK(row.min_p >= 0.0f && row.min_p <= 1.0f) << row.min_p;
  CHECK(row.uniform >= 0.0f && row.uniform < 1.0f) << row.uniform;

  // NaN counts as -inf.
  std::vector<double> l(vocab);
  double max_logit = -kInfinity;
  for (size_t i = 0; i < vocab; ++i) {
    l[i] = std::isnan(logits[i]) ? -kInfinity : static_cast<double>(logits[i]);
    max_logit = std::max(max_logit, l[i]);
  }
  CHECK(std::isfinite(max_logit)) << "the logits need a finite maximum and no +inf";
  std::vector<double> p(vocab);
  const double temperature = row.temperature;
  for (size_t i = 0; i < vocab; ++i) p[i] = std::exp((l[i] - max_logit) / temperature);

  std::vector<char> kept(vocab, 1);
  SampleTrace trace;
  trace.top_p_margin = kInfinity;
  trace.min_p_margin = kInfinity;

  // top_k: the k-th largest logit, counted with multiplicity, is the threshold.
  if (row.top_k > 0 && static_cast<size_t>(row.top_k) < vocab) {
    std::vector<double> sorted = l;
    const auto kth = sorted.begin() + (row.top_k - 1);
    std::nth_element(sorted.begin(), kth, sorted.end(), std::greater<double>());
    const double threshold = *kth;
    for (size_t i = 0; i < vocab; ++i) kept[i] = l[i] >= threshold;
  }

  // top_p over the top_k survivors, walked in groups of equal p.
  if (row.top_p < 1.0f) {
    std::vector<int32_t> order;
    for (size_t i = 0; i < vocab; ++i) {
      if (kept[i]) order.push_back(static_cast<int32_t>(i));
    }
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    double mass = 0.0;
    for (int32_t i : order) mass += p[i];
    const double needed = static_cast<double>(row.top_p) * mass;
    double above = 0.0;  // Mass strictly above the current group.
    double threshold = p[order.front()];
    for (size_t g = 0; g < order.size();) {
      size_t end = g;
      double group = 0.0;
      while (end < order.size() && p[order[end]] == p[order[g]]) group += p[order[end++]];
      if (above + group >= needed || end == order.size()) {
        threshold = p[order[g]];
        trace.top_p_margin = std::min(needed - above, above + group - needed) / mass;
        break;
      }
      above += group;
      g = end;
    }
    for (int32_t i : order) kept[i] = p[i] >= threshold;
  }

  // min_p against p_max = 1.
  if (row.min_p > 0.0f) {
    const double min_p = row.min_p;
    for (size_t i = 0; i < vocab; ++i) {
      if (!kept[i]) continue;
      trace.min_p_margin = std::min(trace.min_p_margin, std::abs(p[i] - min_p) / min_p);
      kept[i] = p[i] >= min_p;
    }
  }

  // The draw, in index order.
  double mass = 0.0;
  for (size_t i = 0; i < vocab; ++i) {
    if (kept[i]) {
      mass += p[i];
      ++trace.num_kept;
    }
  }
  CHECK_GE(mass, 1.0);  // The maximum (p = 1) always survives.
  const double target = static_cast<double>(row.uniform) * mass;
  double running = 0.0;
  int64_t last_positive = -1;
  for (size_t i = 0; i < vocab; ++i) {
    if (!kept[i] || p[i] <= 0.0) continue;
    last_positive = static_cast<int64_t>(i);
    const double before = running;
    running += p[i];
    if (running > target) {
      trace.token = static_cast<int32_t>(i);
      trace.draw_margin = std::min(target - before, running - target) / mass;
      return trace;
    }
  }
  CHECK_GE(last_positive, 0);
  trace.token = static_cast<int32_t>(last_positive);
  trace.draw_margin = 0.0;  // Rounding decided it: as close to a boundary as can be.
  return trace;
}

int32_t SampleTokenReference(std::span<const float> logits, const SamplingRow& row) {
  return SampleTokenTraced(logits, row).token;
}

}  // namespace iquest::cpu
