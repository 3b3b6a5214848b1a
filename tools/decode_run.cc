#include "tools/decode_run.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace iquest {
namespace {

using Seconds = std::chrono::duration<double>;

class CountingSink : public TokenSink {
 public:
  void OnOutput(GenerationOutput output) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (output.request_done) {
      timings_.push_back(output.timings);
      tokens_.push_back(output.usage.completion_tokens);
      cv_.notify_all();
    }
  }
  void WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return timings_.size() >= n; });
  }
  std::vector<RequestTimings> timings_;
  std::vector<int64_t> tokens_;  // Completion tokens, in the order of timings_.

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

}  // namespace

absl::StatusOr<DecodeRun> RunDecode(LlamaModel& model, int batch, int max_tokens,
                                    bool backend_sampling,
                                    const std::function<void(int, GenerationRequest&)>& configure,
                                    const std::function<void(EngineConfig&)>& configure_engine) {
  std::vector<GenerationRequest> requests;
  int64_t max_len = 0;
  for (int i = 0; i < batch; ++i) {
    GenerationRequest& r = requests.emplace_back();
    r.request_id = std::to_string(i);
    for (int t = 0; t < 16; ++t)
      r.prompt_token_ids.push_back((i * 31 + t * 7 + 1) % model.config().vocab_size);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    if (configure) configure(i, r);
    max_len = std::max<int64_t>(
        max_len, static_cast<int64_t>(r.prompt_token_ids.size()) + r.sampling.max_tokens);
  }
  EngineConfig config;
  config.backend_sampling = backend_sampling;
  config.kv_cache.block_size = 16;
  config.kv_cache.dtype = model.backend().preferred_kv_dtype();
  config.kv_cache.num_blocks = batch * (max_len / 16 + 2);
  config.scheduler.max_num_seqs = batch;
  config.scheduler.max_num_batched_tokens = std::max(2048, 16 * batch);
  config.scheduler.max_model_len = std::min<int64_t>(model.config().max_context_len, 4096);
  if (configure_engine) configure_engine(config);
  auto engine = Engine::Create(model, config);
  if (!engine.ok()) return engine.status();
  auto sink = std::make_shared<CountingSink>();
  for (const GenerationRequest& r : requests) {
    const absl::Status status = (*engine)->Submit(r, sink);
    if (!status.ok()) return status;
  }
  sink->WaitFor(static_cast<size_t>(batch));
  Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
  double rate_sum = 0;
  for (size_t i = 0; i < sink->timings_.size(); ++i) {
    const RequestTimings& t = sink->timings_[i];
    first = std::min(first, t.first_token);
    last = std::max(last, t.finished);
    rate_sum +=
        static_cast<double>(sink->tokens_[i] - 1) / Seconds(t.finished - t.first_token).count();
  }
  int64_t total_tokens = 0;
  for (int64_t n : sink->tokens_) total_tokens += n;
  const double decode_tokens = static_cast<double>(total_tokens - batch);
  const EngineStats stats = (*engine)->Stats();
  DecodeRun run;
  run.tok_s = decode_tokens / Seconds(last - first).count();
  run.mean_request_tok_s = rate_sum / static_cast<double>(sink->timings_.size());
  run.bytes_to_host_step = static_cast<double>(stats.bytes_to_host) /
                           static_cast<double>(std::max<int64_t>(stats.num_steps, 1));
  run.num_steps = stats.num_steps;
  run.spec = stats.spec_decode;
  return run;
}

}  // namespace iquest
