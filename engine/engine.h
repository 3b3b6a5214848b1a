// Engine: owns the step thread and, through it, all mutable serving state (scheduler, block
// manager, KV cache, model runner). Other threads only Submit, Cancel, read Stats and Shutdown;
// results flow back through each request's TokenSink, called on the engine thread.
//
// One step: take new requests and cancellations (EngineInbox) -> Scheduler::Schedule ->
// ModelRunner::Execute -> Scheduler::Update -> RequestOutputs (stop strings, TokenSink outputs)
// -> with speculative decoding, the next step's drafts (engine/speculation/).
// Cancellation and deadlines are handled at the next step boundary, so a cancelled request's
// blocks are free within one step.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/constrained_decoding.h"
#include "engine/engine_inbox.h"
#include "engine/mask_worker.h"
#include "engine/model_runner.h"
#include "engine/request_outputs.h"
#include "engine/retry_hint.h"
#include "engine/speculation/speculator.h"
#include "engine/stop_strings.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "scheduler/check_fits.h"
#include "scheduler/scheduler.h"

namespace iquest {

struct EngineConfig {
  SchedulerConfig scheduler;
  KvCacheConfig kv_cache;
  // Turns tokens into text for stop strings and streamed text; empty: token ids only, and
  // requests with stop strings are refused.
  TextStreamFactory text_stream_factory;
  // Called on the engine thread after every step (for metrics) with the step's whole time:
  // forward, sampling, scheduler update and handing the outputs to the sinks. Must not block.
  std::function<void(double step_seconds, int64_t num_batch_tokens)> step_observer;
  // KV-cache events (scheduler/kv_events.h), handed over after every loop turn that made some;
  // on the engine thread, so it must not block. Needs scheduler.record_kv_events.
  std::function<void(std::vector<KvCacheEvent>)> kv_event_observer;
  // Rows that need no logit processor are sampled on the backend (ModelRunner); false sends
  // every row's logits to the host (for comparisons).
  bool backend_sampling = true;
  // Speculative decoding; method kNone: one token per step. kDraft needs `draft_model` (outliving
  // the engine; the same vocabulary) and its own KV pool, `draft_kv_cache`.
  SpeculationConfig speculation;
  LlamaModel* draft_model = nullptr;
  KvCacheConfig draft_kv_cache;
};

// What the server hands the engine: parsed, validated and tokenized.
struct GenerationRequest {
  std::string request_id;
  std::string owner;  // The caller's identity; request_ids are unique per owner.
  std::vector<int32_t> prompt_token_ids;
  SamplingParams sampling;
  int32_t priority = 0;
  std::string tenant;
  std::string cache_salt;
  std::optional<Clock::time_point> deadline;
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
  // Bytes the steps' results cost to bring from the backend to the host, over all steps: rows
  // sampled on the backend bring back only their token and its logprob (ModelRunner).
  int64_t bytes_to_host = 0;
  int64_t num_finished = 0;           // Requests finished (every sample done), since start.
  SpecDecodeCounters spec_decode;     // Zeros without speculative decoding.
  int64_t draft_num_used_blocks = 0;  // The draft model's KV pool (--speculative draft).
  // Loop models' local pool (scheduler/kv_blocks.h); 0 for others.
  int64_t num_local_blocks = 0;
  int64_t num_used_local_blocks = 0;
  int64_t max_used_local_blocks = 0;  // The most in use at once (within steps), since start.
  double finished_per_second = 0;     // Smoothed over ~10 s (DrainRate): the retry hint's basis.
  SchedulerCounters counters;
};

// Loop models: the local KV pool's blocks for `max_num_seqs` requests each holding its window
// (and a partial block), plus one full step's chunk tokens: what keeps every seat running.
int64_t LocalBlocksFor(int64_t window, int64_t block_size, int64_t max_num_seqs,
                       int64_t max_num_batched_tokens);
// For a Loop model: the scheduler's local window and the local pool (kv_cache.num_local_blocks;
// LocalBlocksFor when 0). Other models: unchanged.
void SetUpLocalPool(const ModelConfig& model, EngineConfig& config);

class Engine {
 public:
  // `model` must outlive the engine. Allocates the KV cache and starts the step thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(LlamaModel& model,
                                                        const EngineConfig& config);
  ~Engine();

  // Thread-safe. kUnavailable while shutting down; kAlreadyExists for a request_id its owner
  // already has live;
  // kResourceExhausted when the queue is full; kOutOfRange when it can never fit the KV pool;
  // kInvalidArgument
  // for an out-of-vocabulary token or a request longer than the context; kDeadlineExceeded
  // when the deadline has already passed.
  absl::Status Submit(GenerationRequest request, std::shared_ptr<TokenSink> sink);
  // Thread-safe. Cancels `owner`'s live request `request_id` (it finishes with kCancelled) and
  // returns true; false when `owner` has no such live request (another owner's is untouched).
  bool Cancel(const std::string& owner, const std::string& request_id);
  // Thread-safe. Drops every prefix-cache key (vLLM's reset_prefix_cache), publishing
  // AllBlocksCleared; FAILED_PRECONDITION while any block is in use. `done` runs on the engine
  // thread within one loop turn and must not block.
  void ResetPrefixCache(std::function<void(absl::Status)> done);
  // Stops admitting, lets running requests finish until `drain` has passed, cancels the rest,
  // and joins the step thread. Idempotent.
  void Shutdown(absl::Duration drain);

  EngineStats Stats() const;
  const ModelConfig& model_config() const { return model_.config(); }
  const EngineConfig& config() const { return config_; }

 private:
  Engine(LlamaModel& model, const EngineConfig& config, std::unique_ptr<KvCache> cache,
         std::unique_ptr<Speculator> speculator);

  void Loop();
  // Moves submissions and cancellations from the inbox into the scheduler. Returns false when
  // the loop must end.
  bool TakeInbox();
  void RunStep(const ScheduledBatch& batch);
  void ExecuteStep(const ScheduledBatch& batch, Clock::time_point now);
  // Ends the requests whose grammar is finished (or left) after this step's tokens.
  void FinishConstrained(const ScheduledBatch& batch, const std::vector<const Request*>& forks);
  // Records the step's verifications and gives the decoding requests their next drafts.
  void Speculate(const ScheduledBatch& batch, const std::vector<RequestStepOutput>& outputs,
                 const std::vector<const Request*>& forks);
  // Hands finished requests' final outputs to their sinks.
  void EmitFinished();
  void PublishStats();
  void CancelAll();

  LlamaModel& model_;
  EngineConfig config_;
  std::unique_ptr<KvCache> cache_;
  // What CheckFits checks a submission against; immutable, so Submit may read it on any thread.
  const FitLimits fit_limits_;
  EngineInbox inbox_;

  // Engine thread only.
  Scheduler scheduler_;
  ModelRunner runner_;
  RequestOutputs outputs_;
  ConstrainedDecoding constrained_;
  MaskWorker mask_worker_;
  std::unique_ptr<Speculator> speculator_;  // Null without speculative decoding.
  std::thread thread_;

  // Written by the engine thread, read by Stats().
  // Engine thread.
  int64_t num_finished_ = 0;
  DrainRate drain_rate_;
  mutable std::mutex stats_mutex_;
  EngineStats stats_;
};

}  // namespace iquest
