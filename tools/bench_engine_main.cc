// iquest-bench-engine: engine figures on one model folder.
//  1. Step overhead: Scheduler::Schedule + building BatchInputs + Scheduler::Update with N
//     running requests and no forward pass (the bookkeeping a step costs beyond the model).
//  2. Decode throughput at several batch sizes through the real engine (prompt 16 tokens,
//     greedy, EOS ignored), as generated tokens per second of decode time.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <numeric>

#include "common/flags.h"
#include "common/log.h"
#include "engine/engine.h"
#include "kernels/backend.h"
#include "model/batch_inputs.h"

namespace iquest {
namespace {

using Seconds = std::chrono::duration<double>;

double StepOverheadMicros(int64_t num_requests, int64_t num_steps) {
  SchedulerConfig config;
  config.max_num_seqs = num_requests;
  config.max_num_batched_tokens = 64 * num_requests;
  config.max_waiting_requests = num_requests;
  config.max_model_len = 4096;
  const int64_t block_size = 16;
  Scheduler scheduler(config, /*num_blocks=*/num_requests * 40, block_size);
  for (int64_t i = 0; i < num_requests; ++i) {
    auto r = std::make_unique<Request>();
    r->prompt_token_ids.assign(64, static_cast<int32_t>(i % 1000));
    r->prompt_token_ids[0] = static_cast<int32_t>(i);  // Distinct prompts: no prefix sharing.
    r->sampling.max_tokens = 512;
    (void)scheduler.AddRequest(std::move(r));
  }
  auto step = [&] {
    const ScheduledBatch batch = scheduler.Schedule(Clock::now());
    BatchBuilder builder(block_size);
    std::vector<int32_t> chunk;
    for (const ScheduledRequest& s : batch.requests) {
      chunk.clear();
      for (int64_t p = 0; p < s.num_tokens; ++p)
        chunk.push_back(s.request->token(s.request->num_computed_tokens + p));
      builder.AddSequence(chunk, s.request->num_computed_tokens, s.request->block_ids,
                          LogitsWanted::kLast);
    }
    const BatchInputs inputs = builder.Build();
    std::vector<std::vector<int32_t>> sampled(batch.requests.size(), std::vector<int32_t>{7});
    scheduler.Update(batch, sampled);
    return inputs.num_tokens();
  };
  step();  // The prefill step.
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < num_steps; ++i) step();
  return Seconds(std::chrono::steady_clock::now() - start).count() * 1e6 /
         static_cast<double>(num_steps);
}

class CountingSink : public TokenSink {
 public:
  void OnOutput(GenerationOutput output) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (output.request_done) {
      timings_.push_back(output.timings);
      tokens_ += output.usage.completion_tokens;
      cv_.notify_all();
    }
  }
  void WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return timings_.size() >= n; });
  }
  std::vector<RequestTimings> timings_;
  int64_t tokens_ = 0;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

// Generated tokens after each request's first token, per second of the decode span.
absl::StatusOr<double> DecodeTokensPerSecond(LlamaModel& model, int batch, int max_tokens) {
  EngineConfig config;
  config.kv_cache.block_size = 16;
  config.kv_cache.num_blocks = batch * ((16 + max_tokens) / 16 + 2);
  config.scheduler.max_num_seqs = batch;
  config.scheduler.max_num_batched_tokens = std::max(2048, 16 * batch);
  config.scheduler.max_model_len = std::min<int64_t>(model.config().max_context_len, 4096);
  auto engine = Engine::Create(model, config);
  if (!engine.ok()) return engine.status();
  auto sink = std::make_shared<CountingSink>();
  for (int i = 0; i < batch; ++i) {
    GenerationRequest r;
    r.request_id = std::to_string(i);
    for (int t = 0; t < 16; ++t)
      r.prompt_token_ids.push_back((i * 31 + t * 7 + 1) % model.config().vocab_size);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    const absl::Status status = (*engine)->Submit(r, sink);
    if (!status.ok()) return status;
  }
  sink->WaitFor(static_cast<size_t>(batch));
  Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
  for (const RequestTimings& t : sink->timings_) {
    first = std::min(first, t.first_token);
    last = std::max(last, t.finished);
  }
  const double decode_tokens = static_cast<double>(sink->tokens_ - batch);
  return decode_tokens / Seconds(last - first).count();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string model_dir = "build/models/random";
  std::string batches = "1,8,32";
  int64_t max_tokens = 64;
  int64_t overhead_requests = 256;
  iquest::FlagParser flags("iquest-bench-engine", "Engine step overhead and decode throughput.");
  flags.AddString("model", &model_dir, "HF checkpoint folder");
  flags.AddString("batches", &batches, "comma-separated decode batch sizes");
  flags.AddInt("max-tokens", &max_tokens, "tokens generated per request", 2, 4096);
  flags.AddInt("overhead-requests", &overhead_requests, "running requests for the overhead figure",
               1, 65536);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  iquest::SetMinLogLevel(iquest::LogLevel::kWarning);
  std::vector<int32_t> batch_sizes;
  if (!iquest::ParseIntList(batches, 1, 4096, &batch_sizes).ok()) return 2;

  const double overhead = iquest::StepOverheadMicros(overhead_requests, 200);
  std::printf(
      "step overhead (schedule + batch inputs + update, no forward), %ld running: %.1f us/step\n",
      static_cast<long>(overhead_requests), overhead);
  auto backend = iquest::MakeBackend(iquest::Device::kCpu);
  auto model = iquest::LlamaModel::Load(model_dir, **backend);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  std::printf("\n%-8s %-14s %-12s\n", "batch", "decode tok/s", "vs batch 1");
  double batch1 = 0;
  for (int32_t batch : batch_sizes) {
    auto rate = iquest::DecodeTokensPerSecond(**model, batch, static_cast<int>(max_tokens));
    if (!rate.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(rate.status().message()).c_str());
      return 1;
    }
    if (batch1 == 0) batch1 = *rate;
    std::printf("%-8d %-14.1f %.2fx\n", batch, *rate, *rate / batch1);
  }
  return 0;
}
