// Reads a histogram off a Prometheus text endpoint (iquest-serve's --metrics-port), so
// iquest-bench can print a server-side figure, the engine step time, beside its client-side ones.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/bench/bench_stats.h"

namespace iquest {

// One histogram summed over its label sets (PromQL's `sum by (le)`).
struct HistogramSnapshot {
  // (upper bound `le`, cumulative count), ascending; the last bound is +Inf.
  std::vector<std::pair<double, double>> buckets;
  double sum = 0;
  double count = 0;
};

// GET http://`target``path` (target is host:port), HTTP/1.0, within `timeout_s`. The body of a
// 200 answer; Unavailable for a connection failure, Internal for another status.
absl::StatusOr<std::string> HttpGet(const std::string& target, const std::string& path,
                                    double timeout_s);

// The histogram `name` (its _bucket, _sum and _count series) of a text exposition. NotFound when
// the text has no such series.
absl::StatusOr<HistogramSnapshot> ParseHistogram(absl::string_view text, absl::string_view name);

// after - before, bucket by bucket: what was observed between two scrapes. Both must come from
// the same histogram (same bounds).
HistogramSnapshot Subtract(const HistogramSnapshot& after, const HistogramSnapshot& before);

// Prometheus's histogram_quantile: the q-quantile (q in [0, 1]), interpolated linearly inside
// the bucket that holds it; the highest finite bound when it falls in +Inf; 0 when empty.
double HistogramQuantile(const HistogramSnapshot& histogram, double q);

// count, mean, p50, p90 and p99 of a histogram of seconds, in milliseconds.
LatencySummary SummarizeHistogramMs(const HistogramSnapshot& histogram);

}  // namespace iquest
