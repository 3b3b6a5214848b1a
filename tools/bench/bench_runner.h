// The load generator of iquest-bench: sends Generate streams at a fixed concurrency or at Poisson
// arrival times over a few channels with the gRPC callback API, and records what each stream saw.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/bench_stats.h"
#include "tools/cli/client_channel.h"

namespace iquest {

struct BenchConfig {
  // At most this many streams in flight; 0 means no bound (needs request_rate).
  int64_t concurrency = 0;
  // Poisson arrivals per second; 0 sends each request as soon as concurrency allows.
  double request_rate = 0;
  int64_t num_requests = 100;
  // Requests run first, to completion, and excluded from the statistics.
  int64_t warmup = 0;
  // Random prompts of `input_len` token ids in [0, vocab_size); 0 asks GetModelInfo. Unused when
  // prompt_file is set (one text prompt per line, used in turn).
  int64_t input_len = 128;
  int64_t vocab_size = 0;
  std::string prompt_file;
  // max_tokens of every request, with ignore_eos so outputs have exactly this length.
  int64_t output_len = 128;
  // This fraction of requests is cancelled right after its first token.
  double cancel_fraction = 0;
  // The whole run (warmup included) ends by then: nothing is sent later, and streams still open
  // then end with DEADLINE_EXCEEDED.
  double max_duration_s = 600;
  uint64_t seed = 0;
  // "grpc" (Generate streams) or "http" (streaming /v1/completions at http_target, one thread
  // per stream in flight, keep-alive connections pooled).
  std::string api = "grpc";
  std::string http_target = "127.0.0.1:8000";
};

struct BenchResult {
  std::vector<RequestRecord> records;  // The measured requests that were sent, in send order.
  int64_t num_not_sent = 0;
  double duration_s = 0;  // From the first measured send to the last measured end.
};

// `before_measured`, when set, runs after the warmup and before the first measured request (say,
// to scrape the server's metrics so the figures cover the measured requests only).
absl::StatusOr<BenchResult> RunBench(const BenchConfig& config, const Connection& connection,
                                     const std::function<void()>& before_measured = {});

}  // namespace iquest
