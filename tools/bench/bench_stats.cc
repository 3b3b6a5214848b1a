// Percentiles and the benchmark summary, table and JSON.
#include "tools/bench/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace iquest {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lower = static_cast<size_t>(std::floor(rank));
  const size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary summary;
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  summary.count = static_cast<int64_t>(values.size());
  summary.mean =
      std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  summary.p50 = Percentile(values, 50);
  summary.p90 = Percentile(values, 90);
  summary.p99 = Percentile(values, 99);
  return summary;
}

BenchReport ComputeReport(const std::vector<RequestRecord>& records, double duration_s) {
  BenchReport report;
  report.duration_s = duration_s;
  std::vector<double> ttft;
  std::vector<double> tpot;
  std::vector<double> itl;
  std::vector<double> e2e;
  for (const RequestRecord& record : records) {
    if (record.cancelled) {
      ++report.num_cancelled;
      continue;
    }
    if (!record.error_code.empty()) {
      ++report.num_failed;
      ++report.errors[record.error_code];
      continue;
    }
    ++report.num_completed;
    report.total_input_tokens += record.prompt_tokens;
    report.total_output_tokens += record.output_tokens;
    e2e.push_back(record.e2e_s * 1e3);
    if (record.ttft_s >= 0) ttft.push_back(record.ttft_s * 1e3);
    if (record.ttft_s >= 0 && record.output_tokens > 1) {
      tpot.push_back((record.e2e_s - record.ttft_s) * 1e3 /
                     static_cast<double>(record.output_tokens - 1));
    }
    for (double gap : record.itl_s) itl.push_back(gap * 1e3);
  }
  if (duration_s > 0) {
    report.request_throughput = static_cast<double>(report.num_completed) / duration_s;
    report.output_throughput = static_cast<double>(report.total_output_tokens) / duration_s;
    report.total_token_throughput =
        static_cast<double>(report.total_input_tokens + report.total_output_tokens) / duration_s;
  }
  report.ttft_ms = Summarize(std::move(ttft));
  report.tpot_ms = Summarize(std::move(tpot));
  report.itl_ms = Summarize(std::move(itl));
  report.e2e_ms = Summarize(std::move(e2e));
  return report;
}

namespace {

nlohmann::json SummaryToJson(const LatencySummary& summary) {
  return {{"count", summary.count},
          {"mean", summary.mean},
          {"p50", summary.p50},
          {"p90", summary.p90},
          {"p99", summary.p99}};
}

}  // namespace

nlohmann::json ReportToJson(const BenchReport& report, const nlohmann::json& config) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, count] : report.errors) errors[code] = count;
  nlohmann::json out = {
      {"config", config},
      {"num_completed", report.num_completed},
      {"num_failed", report.num_failed},
      {"num_cancelled", report.num_cancelled},
      {"num_not_sent", report.num_not_sent},
      {"errors", errors},
      {"duration_s", report.duration_s},
      {"total_input_tokens", report.total_input_tokens},
      {"total_output_tokens", report.total_output_tokens},
      {"request_throughput", report.request_throughput},
      {"output_throughput", report.output_throughput},
      {"total_token_throughput", report.total_token_throughput},
      {"ttft_ms", SummaryToJson(report.ttft_ms)},
      {"tpot_ms", SummaryToJson(report.tpot_ms)},
      {"itl_ms", SummaryToJson(report.itl_ms)},
      {"e2e_ms", SummaryToJson(report.e2e_ms)},
  };
  if (report.engine_step_ms) out["engine_step_ms"] = SummaryToJson(*report.engine_step_ms);
  return out;
}

std::string ReportJsonText(const BenchReport& report, const nlohmann::json& config) {
  return ReportToJson(report, config).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string FormatTable(const BenchReport& report) {
  std::string out = "============ Serving Benchmark Result ============\n";
  auto line = [&out](const std::string& name, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-40s %10s\n", name, value));
  };
  line("Successful requests:", absl::StrCat(report.num_completed));
  line("Failed requests:", absl::StrCat(report.num_failed));
  for (const auto& [code, count] : report.errors) line("  " + code + ":", absl::StrCat(count));
  line("Cancelled requests (--cancel-fraction):", absl::StrCat(report.num_cancelled));
  if (report.num_not_sent > 0)
    line("Not sent (--max-duration-s):", absl::StrCat(report.num_not_sent));
  line("Benchmark duration (s):", absl::StrFormat("%.2f", report.duration_s));
  line("Total input tokens:", absl::StrCat(report.total_input_tokens));
  line("Total generated tokens:", absl::StrCat(report.total_output_tokens));
  line("Request throughput (req/s):", absl::StrFormat("%.2f", report.request_throughput));
  line("Output token throughput (tok/s):", absl::StrFormat("%.2f", report.output_throughput));
  line("Total token throughput (tok/s):", absl::StrFormat("%.2f", report.total_token_throughput));
  std::vector<std::pair<const char*, const LatencySummary*>> metrics = {
      {"Time to First Token", &report.ttft_ms},
      {"Time per Output Token (excl. 1st token)", &report.tpot_ms},
      {"Inter-token Latency", &report.itl_ms},
      {"End-to-end Latency", &report.e2e_ms}};
  if (report.engine_step_ms) {
    metrics.push_back({"Engine step (server, from its histogram)", &*report.engine_step_ms});
  }
  for (const auto& [title, summary] : metrics) {
    absl::StrAppend(&out, absl::StrFormat("%s\n", std::string(title)));
    line("  Mean (ms):", absl::StrFormat("%.2f", summary->mean));
    line("  P50 (ms):", absl::StrFormat("%.2f", summary->p50));
    line("  P90 (ms):", absl::StrFormat("%.2f", summary->p90));
    line("  P99 (ms):", absl::StrFormat("%.2f", summary->p99));
  }
  absl::StrAppend(&out, "==================================================\n");
  return out;
}

}  // namespace iquest
