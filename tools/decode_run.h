// One decode throughput run through the real engine, shared by the benchmarks: `batch` requests
// (a 16-token prompt each, then `configure` may change them) submitted at once, each generating
// `max_tokens` tokens, timed from the first first-token to the last finish. The KV pool holds
// every request whole; `configure_engine` may change the rest (speculative decoding).
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "model/llama.h"

namespace iquest {

struct DecodeRun {
  double tok_s = 0;  // Generated tokens after each first token, per decode second.
  // The mean over requests of each one's own rate: its tokens after the first over its first
  // token to its finish (what a client sees; a fixed batch's tok_s is set by its slowest).
  double mean_request_tok_s = 0;
  double bytes_to_host_step = 0;  // Results brought to the host per engine step (ModelRunner).
  int64_t num_steps = 0;
  SpecDecodeCounters spec;  // Zeros without speculative decoding.
};

// Requests are greedy with EOS ignored unless `configure` says otherwise.
absl::StatusOr<DecodeRun> RunDecode(
    LlamaModel& model, int batch, int max_tokens, bool backend_sampling,
    const std::function<void(int, GenerationRequest&)>& configure = {},
    const std::function<void(EngineConfig&)>& configure_engine = {});

}  // namespace iquest
