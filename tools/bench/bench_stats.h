// Statistics of a serving benchmark: per-request timings in, vLLM `bench serve`-style summary out
// (mean / p50 / p90 / p99 of TTFT, TPOT, ITL and E2E, throughputs, errors by gRPC code), as a
// table and as JSON.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace iquest {

// Percentile `q` in [0, 100] of ascending `sorted` values, interpolating linearly between the
// closest ranks (NumPy's default, which vLLM's benchmark uses). 0 for no values.
double Percentile(const std::vector<double>& sorted, double q);

struct LatencySummary {
  int64_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

LatencySummary Summarize(std::vector<double> values);

// What the load generator saw of one request. Times are seconds from sending the request.
struct RequestRecord {
  // "" for success, else the gRPC code's name (RESOURCE_EXHAUSTED, ...).
  std::string error_code;
  // Cancelled on purpose by --cancel-fraction after its first token: neither a success nor an
  // error, and left out of the latency statistics.
  bool cancelled = false;
  double ttft_s = -1;         // First response carrying tokens; -1 when none came.
  double e2e_s = 0;           // Until the final status.
  std::vector<double> itl_s;  // Gaps between consecutive token-bearing responses.
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
};

struct BenchReport {
  int64_t num_completed = 0;
  int64_t num_failed = 0;
  int64_t num_cancelled = 0;
  int64_t num_not_sent = 0;               // Requests never sent because --max-duration-s ran out.
  std::map<std::string, int64_t> errors;  // gRPC code name -> count.
  double duration_s = 0;
  int64_t total_input_tokens = 0;   // Of completed requests.
  int64_t total_output_tokens = 0;  // Of completed requests.
  double request_throughput = 0;    // Completed requests per second.
  double output_throughput = 0;     // Output tokens per second.
  double total_token_throughput = 0;
  // Milliseconds; over completed requests. TPOT = (e2e - ttft) / (tokens - 1), for requests with
  // more than one token; ITL pools every gap of every completed request.
  LatencySummary ttft_ms;
  LatencySummary tpot_ms;
  LatencySummary itl_ms;
  LatencySummary e2e_ms;
  // The server's engine step (iquest_step_duration_seconds over the measured requests, quantiles
  // interpolated in its buckets); unset without --metrics-target.
  std::optional<LatencySummary> engine_step_ms;
};

BenchReport ComputeReport(const std::vector<RequestRecord>& records, double duration_s);

// `config` is echoed under "config" so a result file says how it was produced.
nlohmann::json ReportToJson(const BenchReport& report, const nlohmann::json& config);

// ReportToJson as indented text; invalid UTF-8 (say, in a prompt file's name) is replaced rather
// than thrown on.
std::string ReportJsonText(const BenchReport& report, const nlohmann::json& config);

std::string FormatTable(const BenchReport& report);

}  // namespace iquest
