// iquest-bench: a serving load generator for the Generation API in the style of vLLM's
// `bench serve`: TTFT, TPOT, ITL and E2E percentiles, throughputs and errors by gRPC code.
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include "common/flags.h"
#include "common/status.h"
#include "tools/bench/bench_runner.h"
#include "tools/bench/bench_stats.h"
#include "tools/bench/metrics_scrape.h"
#include "tools/cli/client_channel.h"

namespace iquest {
namespace {

struct Options {
  ConnectionOptions connection;
  BenchConfig bench;
  int64_t num_channels = 4;
  int64_t seed = 0;
  std::string json_out;
  bool json = false;
  std::string metrics_target;
};

void AddFlags(FlagParser& flags, Options& options) {
  BenchConfig& bench = options.bench;
  AddConnectionFlags(flags, &options.connection);
  flags.AddInt("concurrency", &bench.concurrency, "streams in flight at most; 0: unbounded", 0,
               100000);
  flags.AddDouble("request-rate", &bench.request_rate,
                  "Poisson arrivals per second; 0: send as concurrency allows", 0, 1e6);
  flags.AddInt("num-requests", &bench.num_requests, "measured requests", 1, 10000000);
  flags.AddInt("warmup", &bench.warmup, "requests run first and left out of the statistics", 0,
               1000000);
  flags.AddInt("input-len", &bench.input_len, "random prompt length in tokens", 1, 1 << 20);
  flags.AddInt("output-len", &bench.output_len, "max_tokens, with ignore_eos", 1, 1 << 20);
  flags.AddInt("vocab-size", &bench.vocab_size, "random ids are below this; 0: GetModelInfo", 0,
               1 << 30);
  flags.AddString("prompt-file", &bench.prompt_file, "one text prompt per line (not random ids)");
  flags.AddDouble("cancel-fraction", &bench.cancel_fraction,
                  "cancel this fraction of streams after their first token", 0, 1);
  flags.AddDouble("max-duration-s", &bench.max_duration_s, "bound on the whole run", 0.001, 1e7);
  flags.AddInt("seed", &options.seed, "seed of prompts, arrivals and cancellations", 0,
               std::numeric_limits<int64_t>::max());
  flags.AddInt("num-channels", &options.num_channels, "gRPC channels (TCP connections)", 1, 64);
  flags.AddString("json-out", &options.json_out, "also write the result as JSON to this file");
  flags.AddBool("json", &options.json, "print JSON instead of the table");
  flags.AddString("api", &bench.api, "grpc (Generate streams) or http (streaming /v1/completions)");
  flags.AddString("http-target", &bench.http_target, "host:port of the HTTP API, for --api http");
  flags.AddString("metrics-target", &options.metrics_target,
                  "host:port of the server's /metrics; adds the engine step time to the report");
}

nlohmann::json ConfigToJson(const Options& options) {
  const BenchConfig& bench = options.bench;
  return {{"target", options.connection.target},
          {"concurrency", bench.concurrency},
          {"request_rate", bench.request_rate},
          {"num_requests", bench.num_requests},
          {"warmup", bench.warmup},
          {"input_len", bench.prompt_file.empty() ? bench.input_len : 0},
          {"output_len", bench.output_len},
          {"prompt_file", bench.prompt_file},
          {"cancel_fraction", bench.cancel_fraction},
          {"max_duration_s", bench.max_duration_s},
          {"seed", bench.seed},
          {"num_channels", options.num_channels},
          {"metrics_target", options.metrics_target},
          {"api", bench.api}};
}

int Run(Options& options) {
  options.bench.seed = static_cast<uint64_t>(options.seed);
  auto connection = Connection::Open(options.connection, static_cast<int>(options.num_channels));
  if (!connection.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(connection.status().message()).c_str());
    return 2;
  }
  // The engine step histogram is read before and after the measured requests: the difference is
  // the steps that served them (and whatever else the server ran meanwhile).
  absl::StatusOr<HistogramSnapshot> steps_before = absl::NotFoundError("not scraped");
  auto scrape_steps = [&options]() -> absl::StatusOr<HistogramSnapshot> {
    ASSIGN_OR_RETURN(const std::string text,
                     HttpGet(options.metrics_target, "/metrics", /*timeout_s=*/10));
    return ParseHistogram(text, "iquest_step_duration_seconds");
  };
  std::function<void()> before_measured;
  if (!options.metrics_target.empty()) {
    before_measured = [&] { steps_before = scrape_steps(); };
  }
  auto result = RunBench(options.bench, *connection, before_measured);
  if (!result.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  BenchReport report = ComputeReport(result->records, result->duration_s);
  report.num_not_sent = result->num_not_sent;
  if (!options.metrics_target.empty()) {
    absl::StatusOr<HistogramSnapshot> steps_after = scrape_steps();
    if (!steps_before.ok() || !steps_after.ok()) {
      const absl::Status& error = steps_before.ok() ? steps_after.status() : steps_before.status();
      std::fprintf(stderr, "error: --metrics-target: %s\n", std::string(error.message()).c_str());
      return 1;
    }
    report.engine_step_ms = SummarizeHistogramMs(Subtract(*steps_after, *steps_before));
  }
  const std::string json = ReportJsonText(report, ConfigToJson(options));
  if (!options.json_out.empty()) {
    std::ofstream out(options.json_out);
    out << json << "\n";
    if (!out) {
      std::fprintf(stderr, "error: cannot write %s\n", options.json_out.c_str());
      return 1;
    }
  }
  std::fputs(options.json ? (json + "\n").c_str() : FormatTable(report).c_str(), stdout);
  return 0;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  iquest::Options options;
  iquest::FlagParser flags("iquest-bench",
                           "Load-tests an iquest-serve Generation endpoint with streaming "
                           "requests and reports latency percentiles and throughput.");
  iquest::AddFlags(flags, options);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  return iquest::Run(options);
}
