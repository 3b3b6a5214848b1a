#include "engine/engine.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/engine_tracked.h"

namespace iquest {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(LlamaModel& model,
                                                       const EngineConfig& config) {
  RETURN_IF_ERROR(config.scheduler.Validate());
  if (config.scheduler.max_model_len > model.config().max_context_len) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len ", config.scheduler.max_model_len,
                                                   " exceeds the model's context of ",
                                                   model.config().max_context_len));
  }
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(model.backend(), model.config(), config.kv_cache));
  std::unique_ptr<Engine> engine(new Engine(model, config, std::move(cache)));
  engine->PublishStats();
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  return engine;
}

Engine::Engine(LlamaModel& model, const EngineConfig& config, std::unique_ptr<KvCache> cache)
    : model_(model),
      config_(config),
      cache_(std::move(cache)),
      scheduler_(config.scheduler, config.kv_cache.num_blocks, config.kv_cache.block_size),
      runner_(model, *cache_) {}

Engine::~Engine() { Shutdown(absl::ZeroDuration()); }

absl::Status Engine::Submit(GenerationRequest in, std::shared_ptr<TokenSink> sink) {
  const ModelConfig& model = model_.config();
  for (int32_t id : in.prompt_token_ids) {
    if (id < 0 || id >= model.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", model.vocab_size, ")"));
    }
  }
  if (!in.sampling.stop_strings.empty() && !config_.text_stream_factory) {
    return absl::InvalidArgumentError("stop strings need a tokenizer, and this engine has none");
  }
  const Clock::time_point now = Clock::now();
  if (in.deadline && *in.deadline <= now) {
    return absl::DeadlineExceededError("the deadline passed before the request was queued");
  }
  auto request = std::make_unique<Request>();
  request->request_id = in.request_id;
  request->prompt_token_ids = std::move(in.prompt_token_ids);
  request->sampling = std::move(in.sampling);
  if (!request->sampling.seed) request->sampling.seed = std::random_device()() * 0x100000001ull;
  request->priority = in.priority;
  request->tenant = std::move(in.tenant);
  request->cache_salt = std::move(in.cache_salt);
  request->arrival_time = now;
  request->deadline = in.deadline;
  request->eos_token_ids = model.eos_token_ids;
  const SchedulerConfig& sc = config_.scheduler;
  const int64_t total = request->num_prompt_tokens() + request->sampling.max_tokens;
  if (request->prompt_token_ids.empty())
    return absl::InvalidArgumentError("prompt must be non-empty");
  if (total > sc.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", request->num_prompt_tokens(), " tokens) + max_tokens (",
                     request->sampling.max_tokens, ") exceeds the maximum context length of ",
                     sc.max_model_len));
  }
  const int64_t block_size = config_.kv_cache.block_size;
  if ((total + block_size - 1) / block_size > config_.kv_cache.num_blocks) {
    return absl::ResourceExhaustedError("the request can never fit in the KV cache");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (live_ids_.count(request->request_id) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("request_id '", request->request_id, "' is live"));
  }
  if (scheduler_new_waiting_ + static_cast<int64_t>(inbox_.size()) >= sc.max_waiting_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full (", sc.max_waiting_requests, " waiting requests)"));
  }
  live_ids_[request->request_id] = true;
  inbox_.push_back({std::move(request), std::move(sink)});
  wake_.notify_one();
  return absl::OkStatus();
}

void Engine::Cancel(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  cancels_.push_back(request_id);
  wake_.notify_one();
}

void Engine::Shutdown(absl::Duration drain) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_) {
      stopping_ = true;
      drain_deadline_ = Clock::now() + absl::ToChronoNanoseconds(drain);
    }
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineStats stats = stats_;
  stats.num_waiting += static_cast<int64_t>(inbox_.size());
  return stats;
}

void Engine::PublishStats() {
  const BlockManager& blocks = scheduler_.block_manager();
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.num_running = scheduler_.num_running();
  stats_.num_waiting = scheduler_.num_waiting();
  stats_.num_blocks = blocks.num_blocks();
  stats_.block_size = blocks.block_size();
  stats_.num_used_blocks = blocks.num_used_blocks();
  stats_.num_cached_blocks = blocks.num_cached_blocks();
  stats_.num_free_blocks = blocks.num_free_blocks() - blocks.num_cached_blocks();
  stats_.counters = scheduler_.counters();
  scheduler_new_waiting_ = scheduler_.num_queued();
}

bool Engine::TakeInbox() {
  std::unique_lock<std::mutex> lock(mutex_);
  const Clock::time_point now = Clock::now();
  if (stopping_ && (now >= drain_deadline_ || (!scheduler_.has_work() && inbox_.empty()))) {
    return false;
  }
  for (Submission& s : inbox_) {
    auto tracked = std::make_unique<Tracked>();
    tracked->sink = std::move(s.sink);
    tracked->num_samples = s.request->sampling.n;
    tracked->timings.arrival = s.request->arrival_time;
    tracked->usage.prompt_tokens = s.request->num_prompt_tokens();
    const std::string request_id = s.request->request_id;
    // Engine checks in Submit guarantee acceptance; the queue bound is re-checked under the lock.
    const absl::StatusOr<uint64_t> id = scheduler_.AddRequest(std::move(s.request));
    CHECK(id.ok()) << id.status();
    tracked_[request_id] = std::move(tracked);
  }
  inbox_.clear();
  scheduler_new_waiting_ = scheduler_.num_queued();
  std::vector<std::string> cancels = std::move(cancels_);
  cancels_.clear();
  lock.unlock();
  for (const std::string& request_id : cancels) {
    for (const Request* r : scheduler_.LiveRequests()) {
      if (r->request_id == request_id) scheduler_.Finish(r->id, FinishReason::kCancelled);
    }
  }
  return true;
}

void Engine::Loop() {
  while (TakeInbox()) {
    const ScheduledBatch batch = scheduler_.Schedule(Clock::now());
    EmitFinished();  // Deadlines and cancellations.
    if (!batch.empty()) {
      RunStep(batch);
    }
    PublishStats();
    if (batch.empty()) {
      std::unique_lock<std::mutex> lock(mutex_);
      // Idle: sleep until new work, a cancel, shutdown, or the next deadline check.
      wake_.wait_for(lock, std::chrono::milliseconds(scheduler_.has_work() ? 1 : 50),
                     [&] { return !inbox_.empty() || !cancels_.empty() || stopping_; });
    }
  }
  CancelAll();
  PublishStats();
}

void Engine::RunStep(const ScheduledBatch& batch) {
  const Clock::time_point now = Clock::now();
  for (const ScheduledRequest& s : batch.requests) {
    Tracked& tracked = *tracked_.at(s.request->request_id);
    if (tracked.timings.first_scheduled == Clock::time_point{})
      tracked.timings.first_scheduled = now;
  }
  absl::StatusOr<std::vector<RequestStepOutput>> outputs = runner_.Execute(batch);
  if (config_.step_observer) {
    config_.step_observer(std::chrono::duration<double>(Clock::now() - now).count(),
                          batch.num_tokens);
  }
  if (!outputs.ok()) {
    // Only this step's requests fail; the engine keeps serving the rest.
    LOG(ERROR) << "event=step_failed" << Kv("error", outputs.status().ToString());
    for (const ScheduledRequest& s : batch.requests) {
      scheduler_.Finish(s.request->id, FinishReason::kInternalError);
    }
    EmitFinished();
    return;
  }
  std::vector<std::vector<int32_t>> sampled(batch.requests.size());
  for (size_t i = 0; i < outputs->size(); ++i) {
    for (const SampledToken& sample : (*outputs)[i].samples) sampled[i].push_back(sample.token);
  }
  scheduler_.Update(batch, sampled);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.num_steps;
  }
  EmitStep(batch, *outputs);
  EmitFinished();
}

void Engine::CancelAll() {
  for (const Request* r : scheduler_.LiveRequests()) {
    scheduler_.Finish(r->id, FinishReason::kCancelled);
  }
  EmitFinished();
  std::deque<Submission> never_scheduled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    never_scheduled.swap(inbox_);
    for (const Submission& s : never_scheduled) live_ids_.erase(s.request->request_id);
  }
  // Sinks are called without the lock held, so they may call back into the engine.
  for (Submission& s : never_scheduled) {
    GenerationOutput out;
    out.finished = out.request_done = true;
    out.finish_reason = FinishReason::kCancelled;
    out.usage.prompt_tokens = s.request->num_prompt_tokens();
    out.timings.arrival = s.request->arrival_time;
    out.timings.finished = Clock::now();
    s.sink->OnOutput(std::move(out));
  }
}

}  // namespace iquest
