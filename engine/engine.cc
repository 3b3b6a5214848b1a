#include "engine/engine.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/speculation/draft_proposer.h"
#include "engine/speculation/ngram_proposer.h"

namespace iquest {
namespace {

absl::StatusOr<std::unique_ptr<Proposer>> MakeProposer(LlamaModel& model,
                                                       const EngineConfig& config) {
  const SpeculationConfig& spec = config.speculation;
  switch (spec.method) {
    case SpeculationMethod::kNgram:
      return std::make_unique<NgramProposer>(spec.ngram_min, spec.ngram_max);
    case SpeculationMethod::kDraft:
      if (config.draft_model == nullptr) {
        return absl::InvalidArgumentError("speculative method 'draft' needs a draft model");
      }
      return DraftProposer::Create(model, *config.draft_model, config.draft_kv_cache,
                                   config.scheduler);
    case SpeculationMethod::kNone:
      break;
  }
  return absl::InvalidArgumentError("no proposer for speculative method 'none'");
}

}  // namespace

int64_t LocalBlocksFor(int64_t window, int64_t block_size, int64_t max_num_seqs,
                       int64_t max_num_batched_tokens) {
  const int64_t window_blocks = (window - 1 + block_size - 1) / block_size + 1;
  return max_num_seqs * window_blocks + (max_num_batched_tokens + block_size - 1) / block_size + 1;
}

void SetUpLocalPool(const ModelConfig& model, EngineConfig& config) {
  if (!model.is_loop() || model.loop_num < 2) return;
  config.scheduler.local_window = model.loop_window;
  if (config.kv_cache.num_local_blocks == 0) {
    config.kv_cache.num_local_blocks =
        LocalBlocksFor(model.loop_window, config.kv_cache.block_size, config.scheduler.max_num_seqs,
                       config.scheduler.max_num_batched_tokens);
  }
  config.scheduler.num_local_blocks = config.kv_cache.num_local_blocks;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(LlamaModel& model,
                                                       const EngineConfig& given) {
  EngineConfig config = given;
  SetUpLocalPool(model.config(), config);
  RETURN_IF_ERROR(config.scheduler.Validate());
  if (config.scheduler.max_model_len > model.config().max_context_len) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len ", config.scheduler.max_model_len,
                                                   " exceeds the model's context of ",
                                                   model.config().max_context_len));
  }
  if (config.scheduler.local_window > 0) {
    // One request alone must always progress: its window and a full step's chunk.
    const int64_t needed =
        KvBlocks::MinLocalBlocks(config.scheduler.local_window, config.kv_cache.block_size,
                                 config.scheduler.max_num_batched_tokens);
    if (config.kv_cache.num_local_blocks < needed) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_local_blocks ", config.kv_cache.num_local_blocks, " is below the ",
                       needed, " one request needs (window ", config.scheduler.local_window,
                       " + a step of ", config.scheduler.max_num_batched_tokens, " tokens)"));
    }
  }
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(model.backend(), model.config(), config.kv_cache));
  std::unique_ptr<Speculator> speculator;
  if (config.speculation.method != SpeculationMethod::kNone) {
    RETURN_IF_ERROR(config.speculation.Validate());
    ASSIGN_OR_RETURN(std::unique_ptr<Proposer> proposer, MakeProposer(model, config));
    speculator = std::make_unique<Speculator>(config.speculation, config.scheduler.max_model_len,
                                              std::move(proposer));
  }
  std::unique_ptr<Engine> engine(
      new Engine(model, config, std::move(cache), std::move(speculator)));
  engine->PublishStats();
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  return engine;
}

Engine::Engine(LlamaModel& model, const EngineConfig& config, std::unique_ptr<KvCache> cache,
               std::unique_ptr<Speculator> speculator)
    : model_(model),
      config_(config),
      cache_(std::move(cache)),
      fit_limits_{model.config().vocab_size, config.scheduler.max_model_len,
                  config.kv_cache.num_blocks, config.kv_cache.block_size},
      inbox_(config.scheduler.max_waiting_requests),
      scheduler_(config.scheduler, config.kv_cache.num_blocks, config.kv_cache.block_size,
                 model.config().vocab_size),
      runner_(model, *cache_),
      outputs_(config.text_stream_factory),
      speculator_(std::move(speculator)) {
  runner_.set_backend_sampling(config.backend_sampling);
}

Engine::~Engine() { Shutdown(absl::ZeroDuration()); }

absl::Status Engine::Submit(GenerationRequest in, std::shared_ptr<TokenSink> sink) {
  RETURN_IF_ERROR(CheckFits(in.prompt_token_ids, in.sampling.max_tokens, fit_limits_));
  if (!in.sampling.stop_strings.empty() && !config_.text_stream_factory) {
    return absl::InvalidArgumentError("stop strings need a tokenizer, and this engine has none");
  }
  const Clock::time_point now = Clock::now();
  if (in.deadline && *in.deadline <= now) {
    return absl::DeadlineExceededError("the deadline passed before the request was queued");
  }
  auto request = std::make_unique<Request>();
  request->request_id = std::move(in.request_id);
  request->owner = std::move(in.owner);
  request->live_key = LiveKey(request->owner, request->request_id);
  request->SetPrompt(std::move(in.prompt_token_ids));
  request->sampling = std::move(in.sampling);
  if (!request->sampling.seed) request->sampling.seed = std::random_device()() * 0x100000001ull;
  request->priority = in.priority;
  request->tenant = std::move(in.tenant);
  request->cache_salt = std::move(in.cache_salt);
  request->arrival_time = now;
  request->deadline = in.deadline;
  request->eos_token_ids = model_.config().eos_token_ids;
  return inbox_.Push({std::move(request), std::move(sink)});
}

bool Engine::Cancel(const std::string& owner, const std::string& request_id) {
  return inbox_.Cancel(LiveKey(owner, request_id));
}

void Engine::Shutdown(absl::Duration drain) {
  inbox_.Stop(Clock::now() + absl::ToChronoNanoseconds(drain));
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::Stats() const {
  EngineStats stats;
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats = stats_;
  }
  stats.num_waiting += inbox_.num_pending();
  return stats;
}

void Engine::PublishStats() {
  const BlockManager& blocks = scheduler_.block_manager();
  inbox_.set_num_queued(scheduler_.num_queued());
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.num_running = scheduler_.num_running();
  stats_.num_waiting = scheduler_.num_waiting();
  stats_.num_blocks = blocks.num_blocks();
  stats_.block_size = blocks.block_size();
  stats_.num_used_blocks = blocks.num_used_blocks();
  stats_.num_cached_blocks = blocks.num_cached_blocks();
  stats_.num_free_blocks = blocks.num_free_blocks() - blocks.num_cached_blocks();
  if (const BlockManager* local = scheduler_.local_block_manager()) {
    stats_.num_local_blocks = local->num_blocks();
    stats_.num_used_local_blocks = local->num_used_blocks();
    stats_.max_used_local_blocks = scheduler_.kv_blocks().max_local_used();
  }
  stats_.bytes_to_host = runner_.bytes_to_host();
  drain_rate_.Observe(Clock::now(), num_finished_);
  stats_.num_finished = num_finished_;
  stats_.finished_per_second = drain_rate_.per_second();
  stats_.counters = scheduler_.counters();
  if (speculator_) {
    stats_.spec_decode = speculator_->counters();
    stats_.draft_num_used_blocks = speculator_->proposer().num_used_blocks();
  }
}

void Engine::ResetPrefixCache(std::function<void(absl::Status)> done) {
  inbox_.ResetPrefixCache(std::move(done));
}

bool Engine::TakeInbox() {
  if (inbox_.ShouldExit(Clock::now(), scheduler_.has_work())) return false;
  EngineInbox::Taken taken = inbox_.Take();
  for (EngineInbox::Submission& s : taken.submissions) {
    // Submit ran CheckFits and the inbox kept the queue bound, so the scheduler accepts it.
    const absl::StatusOr<uint64_t> id = scheduler_.AddRequest(std::move(s.request));
    CHECK(id.ok()) << id.status();
    outputs_.Add(*scheduler_.Find(*id), std::move(s.sink));
  }
  inbox_.set_num_queued(scheduler_.num_queued());
  for (const std::string& key : taken.cancels) {
    for (uint64_t id : outputs_.SampleIds(key)) {
      scheduler_.Finish(id, FinishReason::kCancelled);
    }
  }
  for (auto& done : taken.cache_resets) done(scheduler_.ResetPrefixCache());
  return true;
}

void Engine::Loop() {
  while (TakeInbox()) {
    const ScheduledBatch batch = scheduler_.Schedule(Clock::now());
    EmitFinished();  // Deadlines and cancellations.
    if (!batch.empty()) RunStep(batch);
    PublishStats();
    if (config_.kv_event_observer) {
      std::vector<KvCacheEvent> events = scheduler_.TakeKvEvents();
      if (!events.empty()) config_.kv_event_observer(std::move(events));
    }
    // Idle: sleep until new work, a cancel, shutdown, or the next deadline check.
    if (batch.empty()) inbox_.Wait(std::chrono::milliseconds(scheduler_.has_work() ? 1 : 50));
  }
  CancelAll();
  PublishStats();
}

void Engine::RunStep(const ScheduledBatch& batch) {
  const Clock::time_point start = Clock::now();
  ExecuteStep(batch, start);
  // The whole step as the engine thread spends it: the forward pass, sampling, the scheduler's
  // update, handing every output over to its sink and proposing the next drafts.
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (speculator_) speculator_->ObserveStepTime(seconds);
  if (config_.step_observer) config_.step_observer(seconds, batch.num_tokens);
}

void Engine::ExecuteStep(const ScheduledBatch& batch, Clock::time_point now) {
  outputs_.OnScheduled(batch, now);
  // Grammar masks are computed on the mask worker while the forward pass runs; sampling waits
  // for them. The worker only reads the batch's requests, which the forward does not change.
  const bool constrained =
      std::any_of(batch.requests.begin(), batch.requests.end(),
                  [](const ScheduledRequest& s) { return s.request->sampling.grammar != nullptr; });
  ModelRunner::ConstraintSource source;
  if (constrained) {
    mask_worker_.Start([this, &batch] { return constrained_.Constraints(batch); });
    source = [this] { return mask_worker_.Take(); };
  }
  absl::StatusOr<std::vector<RequestStepOutput>> outputs = runner_.Execute(batch, source);
  if (mask_worker_.busy()) mask_worker_.Take();  // The forward failed before sampling.
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
  std::vector<int64_t> num_tokens_before(batch.requests.size());
  for (size_t i = 0; i < outputs->size(); ++i) {
    for (const SampledToken& sample : (*outputs)[i].samples) sampled[i].push_back(sample.token);
    num_tokens_before[i] = batch.requests[i].request->num_tokens();
  }
  const std::vector<const Request*> forks = scheduler_.Update(batch, sampled);
  // A token that finished the request drops the ones after it (accepted drafts past a stop).
  for (size_t i = 0; i < outputs->size(); ++i) {
    RequestStepOutput& out = (*outputs)[i];
    if (out.fork) continue;
    const int64_t appended = batch.requests[i].request->num_tokens() - num_tokens_before[i];
    if (static_cast<int64_t>(out.samples.size()) > appended) out.samples.resize(appended);
  }
  if (constrained) FinishConstrained(batch, forks);
  outputs_.AddForks(forks);
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    ++stats_.num_steps;
  }
  for (uint64_t id : outputs_.OnStep(batch, *outputs)) {
    scheduler_.Finish(id, FinishReason::kStopString);
  }
  if (speculator_) Speculate(batch, *outputs, forks);
  EmitFinished();
}

void Engine::Speculate(const ScheduledBatch& batch, const std::vector<RequestStepOutput>& outputs,
                       const std::vector<const Request*>& forks) {
  speculator_->Observe(batch, outputs);
  std::vector<const Request*> decoding;
  auto consider = [&decoding](const Request& r) {
    if (MaySpeculate(r)) decoding.push_back(&r);
  };
  for (const ScheduledRequest& s : batch.requests) consider(*s.request);
  for (const Request* fork : forks) consider(*fork);
  for (auto& [id, drafts] : speculator_->Propose(decoding)) {
    scheduler_.SetDrafts(id, std::move(drafts));
  }
}

void Engine::FinishConstrained(const ScheduledBatch& batch,
                               const std::vector<const Request*>& forks) {
  auto check = [this](const Request& r) {
    if (r.is_finished() || r.sampling.grammar == nullptr) return;
    switch (constrained_.AfterStep(r)) {
      case ConstrainedDecoding::Verdict::kContinue:
        return;
      case ConstrainedDecoding::Verdict::kComplete:
        scheduler_.Finish(r.id, FinishReason::kStopToken);
        return;
      case ConstrainedDecoding::Verdict::kDeadEnd:
        LOG(ERROR) << "event=grammar_dead_end" << Kv("request_id", r.request_id);
        scheduler_.Finish(r.id, FinishReason::kInternalError);
        return;
    }
  };
  for (const ScheduledRequest& s : batch.requests) check(*s.request);
  for (const Request* fork : forks) check(*fork);
}

void Engine::EmitFinished() {
  std::vector<std::unique_ptr<Request>> finished = scheduler_.TakeFinished();
  if (finished.empty()) return;
  for (const auto& r : finished) {
    constrained_.Forget(r->id);
    if (speculator_) speculator_->Forget(r->id);
  }
  // Publish first: by the time a client sees its request end, the stats show its blocks freed.
  PublishStats();
  outputs_.OnFinished(std::move(finished), [this](const std::string& key) {
    inbox_.Release(key);
    ++num_finished_;
  });
}

void Engine::CancelAll() {
  for (const Request* r : scheduler_.LiveRequests()) {
    scheduler_.Finish(r->id, FinishReason::kCancelled);
  }
  EmitFinished();
  // Sinks are called without the inbox's lock held, so they may call back into the engine.
  for (EngineInbox::Submission& s : inbox_.TakeAllPending()) {
    RequestOutputs::EmitNeverScheduled(*s.request, *s.sink);
  }
}

}  // namespace iquest
