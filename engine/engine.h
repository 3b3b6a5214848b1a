// Engine: owns the step thread and, through it, all mutable serving state (scheduler, block
// manager, KV cache, model runner). Other threads only Submit, Cancel, read Stats and Shutdown;
// results flow back through each request's TokenSink, called on the engine thread.
//
// One step: take new requests and cancellations -> Scheduler::Schedule -> ModelRunner::Execute
// -> Scheduler::Update -> stop strings -> TokenSink outputs. Cancellation and deadlines are
// handled at the next step boundary, so a cancelled request's blocks are free within one step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model_runner.h"
#include "engine/stop_strings.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "scheduler/scheduler.h"

namespace iquest {

struct EngineConfig {
  SchedulerConfig scheduler;
  KvCacheConfig kv_cache;
  // Turns tokens into text for stop strings and streamed text; empty: token ids only, and
  // requests with stop strings are refused.
  TextStreamFactory text_stream_factory;
  // Called on the engine thread after every model step (for metrics); must not block.
  std::function<void(double step_seconds, int64_t num_batch_tokens)> step_observer;
};

// What the server hands the engine: parsed, validated and tokenized.
struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  SamplingParams sampling;
  int32_t priority = 0;
  std::string tenant;
  std::string cache_salt;
  std::optional<Clock::time_point> deadline;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // Over all n samples.
  int64_t cached_tokens = 0;      // Prompt tokens served by the prefix cache.
};

struct RequestTimings {
  Clock::time_point arrival{};
  Clock::time_point first_scheduled{};
  Clock::time_point first_token{};
  Clock::time_point finished{};
};

// One delta of one sample. A sample's last output has `finished` set; the request's very last
// output (all n samples finished) also has `request_done`, with the usage and timings.
struct GenerationOutput {
  int32_t sample_index = 0;
  std::vector<int32_t> token_ids;
  std::string text;                    // Delta text (when the engine has a TextStreamFactory).
  std::vector<SampledToken> logprobs;  // One per token in token_ids.
  std::vector<PromptLogprob> prompt_logprobs;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  bool request_done = false;
  Usage usage;
  RequestTimings timings;
};

class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // Called on the engine thread; must not block.
  virtual void OnOutput(GenerationOutput output) = 0;
};

struct EngineStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;  // Including requests not yet handed to the scheduler.
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_used_blocks = 0;
  int64_t num_cached_blocks = 0;
  int64_t num_free_blocks = 0;
  int64_t num_steps = 0;
  SchedulerCounters counters;
};

class Engine {
 public:
  // `model` must outlive the engine. Allocates the KV cache and starts the step thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(LlamaModel& model,
                                                        const EngineConfig& config);
  ~Engine();

  // Thread-safe. kUnavailable while shutting down; kAlreadyExists for a live request_id;
  // kResourceExhausted when the queue is full or the request can never fit; kInvalidArgument
  // for an out-of-vocabulary token or a request longer than the context; kDeadlineExceeded
  // when the deadline has already passed.
  absl::Status Submit(GenerationRequest request, std::shared_ptr<TokenSink> sink);
  // Thread-safe; unknown ids are ignored. The request finishes with kCancelled.
  void Cancel(const std::string& request_id);
  // Stops admitting, lets running requests finish until `drain` has passed, cancels the rest,
  // and joins the step thread. Idempotent.
  void Shutdown(absl::Duration drain);

  EngineStats Stats() const;
  const ModelConfig& model_config() const { return model_.config(); }
  const EngineConfig& config() const { return config_; }

 private:
  struct Tracked;
  Engine(LlamaModel& model, const EngineConfig& config, std::unique_ptr<KvCache> cache);

  void Loop();
  // Moves submissions and cancellations from the inbox into the scheduler. Returns false when
  // the loop must end.
  bool TakeInbox();
  void RunStep(const ScheduledBatch& batch);
  void EmitStep(const ScheduledBatch& batch, const std::vector<RequestStepOutput>& outputs);
  void EmitFinished();
  void EmitSample(Tracked& tracked, const Request& request, int32_t sample_index,
                  const SampledToken& sample, std::vector<PromptLogprob> prompt_logprobs);
  void PublishStats();
  void CancelAll();

  LlamaModel& model_;
  EngineConfig config_;
  std::unique_ptr<KvCache> cache_;
  Scheduler scheduler_;
  ModelRunner runner_;

  // Shared with other threads, guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  struct Submission {
    std::unique_ptr<Request> request;
    std::shared_ptr<TokenSink> sink;
  };
  std::deque<Submission> inbox_;
  std::vector<std::string> cancels_;
  std::unordered_map<std::string, bool> live_ids_;  // request_ids submitted and not done.
  int64_t scheduler_new_waiting_ = 0;               // Published by the engine thread.
  bool stopping_ = false;
  Clock::time_point drain_deadline_{};
  EngineStats stats_;

  // Engine thread only.
  std::unordered_map<std::string, std::unique_ptr<Tracked>> tracked_;
  std::thread thread_;
};

}  // namespace iquest
