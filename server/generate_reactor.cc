#include "server/generate_reactor.h"

#include <chrono>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/auth.h"
#include "server/request_log.h"
#include "server/request_validation.h"
#include "server/serving_context.h"
#include "server/stream_pump.h"

namespace iquest {

// One output as the engine handed it over, stamped on the engine thread so inter-token latency
// is the engine's, not the pump's.
struct HandedOutput {
  GenerationOutput output;
  Clock::time_point time;
};

struct StreamState : StreamPump::Stream {
  // Runs on the pump thread: records metrics, builds the responses, starts the next write.
  void Drain() override;

  std::mutex mutex;
  // Engine thread -> pump. `scheduled`: this stream waits in the pump's queue.
  std::vector<HandedOutput> handed;
  bool scheduled = false;
  // Pump and gRPC threads.
  GenerateReactor* reactor = nullptr;  // Null once OnDone ran.
  std::deque<serve::v1::GenerateResponse> queue;
  serve::v1::GenerateResponse in_flight;  // Alive until OnWriteDone.
  bool writing = false;
  bool finish_pending = false;  // The last output is queued.
  bool finished = false;        // Finish() was called.
  grpc::Status final_status;
  // Set before the stream is shared.
  ServerMetrics* metrics = nullptr;
  StreamPump* pump = nullptr;
  std::string request_id;
  std::string owner;   // Request::owner: the scope of request_id.
  std::string tenant;  // For the request log line.
  int32_t priority = 0;
  ToolCalling tools;  // What tool_choice asked (kNone: the text as it is).
  // Pump thread only.
  std::map<int32_t, Clock::time_point> last_token_time;  // Per sample, for inter-token latency.
  std::map<int32_t, ToolCallExtractor> extractors;       // Per sample, when tools are parsed.
  GenerationOutput last;  // The request_done output, for the request log line (under mutex).
};

namespace {

serve::v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStopToken:
      return serve::v1::FINISH_REASON_STOP_TOKEN;
    case FinishReason::kStopString:
      return serve::v1::FINISH_REASON_STOP_STRING;
    case FinishReason::kLength:
      return serve::v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
    case FinishReason::kInternalError:
      return serve::v1::FINISH_REASON_CANCELLED;
    case FinishReason::kDeadlineExceeded:
      return serve::v1::FINISH_REASON_DEADLINE_EXCEEDED;
    case FinishReason::kNone:
      break;
  }
  return serve::v1::FINISH_REASON_UNSPECIFIED;
}

// The RPC status a finished request ends with: OK for a natural end.
grpc::Status FinalStatus(FinishReason reason) {
  switch (reason) {
    case FinishReason::kCancelled:
      return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
    case FinishReason::kDeadlineExceeded:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    case FinishReason::kInternalError:
      return grpc::Status(grpc::StatusCode::INTERNAL, "the engine step failed");
    default:
      return grpc::Status::OK;
  }
}

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  if (from == Clock::time_point{} || to == Clock::time_point{}) return 0.0;
  return std::chrono::duration<double>(to - from).count();
}

void FillLogprobs(const std::vector<TokenLogprob>& top,
                  google::protobuf::RepeatedPtrField<serve::v1::TopLogprob>* out) {
  for (const TokenLogprob& t : top) {
    serve::v1::TopLogprob* entry = out->Add();
    entry->set_token_id(t.token);
    entry->set_logprob(t.logprob);
  }
}

// Starts the next write or the Finish, outside the lock (a reaction may run inline). Called on
// the pump thread after a drain and on a gRPC thread after each write.
void Pump(StreamState& state) {
  GenerateReactor* reactor = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    if (state.reactor == nullptr || state.writing || state.finished) return;
    reactor = state.reactor;
    if (!state.queue.empty()) {
      state.in_flight = std::move(state.queue.front());
      state.queue.pop_front();
      state.writing = true;
    } else if (state.finish_pending) {
      state.finished = true;
      finish = true;
      status = state.final_status;
    } else {
      return;
    }
  }
  if (finish) {
    reactor->Finish(status);
  } else {
    reactor->StartWrite(&state.in_flight);
  }
}

// Metrics are recorded even if the client has gone: the work was done.
void Record(ServerMetrics& metrics, const HandedOutput& handed,
            std::map<int32_t, Clock::time_point>& last_token_time) {
  const GenerationOutput& output = handed.output;
  if (!output.token_ids.empty()) {
    metrics.ObserveTokens(static_cast<int64_t>(output.token_ids.size()));
    auto [it, first] = last_token_time.emplace(output.sample_index, handed.time);
    if (!first) {
      metrics.ObserveInterTokenLatency(
          std::chrono::duration<double>(handed.time - it->second).count());
      it->second = handed.time;
    }
  }
  if (output.request_done) metrics.ObserveRequestDone(output);
}

bool HasContent(const GenerationOutput& output) {
  return !output.token_ids.empty() || !output.text.empty() || !output.prompt_logprobs.empty() ||
         output.finished;
}

// The engine thread's side: hand the output over and, once per burst, wake the pump.
class ReactorSink : public TokenSink {
 public:
  explicit ReactorSink(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}

  void OnOutput(GenerationOutput output) override {
    const Clock::time_point now = Clock::now();
    bool schedule = false;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->handed.push_back({std::move(output), now});
      schedule = !state_->scheduled;
      state_->scheduled = true;
    }
    if (schedule) state_->pump->Schedule(state_);
  }

 private:
  std::shared_ptr<StreamState> state_;
};

}  // namespace

void StreamState::Drain() {
  std::vector<HandedOutput> taken;
  {
    std::lock_guard<std::mutex> lock(mutex);
    taken.swap(handed);
    scheduled = false;
  }
  // Outside the lock: the engine thread may hand over more meanwhile.
  std::vector<serve::v1::GenerateResponse> responses;
  const HandedOutput* done = nullptr;
  for (const HandedOutput& h : taken) {
    if (metrics != nullptr) Record(*metrics, h, last_token_time);
    if (HasContent(h.output)) {
      responses.push_back(ToResponse(h.output, request_id));
      if (tools.choice != ToolChoice::kNone) {
        // The calls leave the text: it carries only the content around them.
        auto [it, added] = extractors.try_emplace(
            h.output.sample_index, tools,
            absl::StrCat("call_", request_id, "_", h.output.sample_index, "_"));
        ToolCallExtractor& extractor = it->second;
        ToolCallDelta delta = extractor.Push(h.output.text, h.output.finished);
        responses.back().set_text(std::move(delta.content));
        for (const ToolCall& call : delta.calls) {
          *responses.back().add_tool_calls() = extractor.ToProto(call);
        }
      }
    }
    if (h.output.request_done) done = &h;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (reactor == nullptr || finished) return;  // The call has ended: nothing to write.
    for (serve::v1::GenerateResponse& r : responses) queue.push_back(std::move(r));
    if (done != nullptr) {
      finish_pending = true;
      final_status = FinalStatus(done->output.finish_reason);
      last = done->output;
    }
  }
  Pump(*this);
}

serve::v1::GenerateResponse ToResponse(const GenerationOutput& output,
                                       const std::string& request_id) {
  serve::v1::GenerateResponse response;
  response.set_request_id(request_id);
  response.set_index(output.sample_index);
  for (int32_t id : output.token_ids) response.add_token_ids(id);
  response.set_text(output.text);
  for (const SampledToken& s : output.logprobs) {
    serve::v1::TokenLogprob* entry = response.add_logprobs();
    entry->set_token_id(s.token);
    entry->set_logprob(s.logprob);
    FillLogprobs(s.top_logprobs, entry->mutable_top());
  }
  for (const PromptLogprob& p : output.prompt_logprobs) {
    serve::v1::PromptLogprob* entry = response.add_prompt_logprobs();
    entry->set_position(static_cast<int32_t>(p.position));
    entry->set_token_id(p.token_id);
    entry->set_logprob(p.logprobs.logprob);
    FillLogprobs(p.logprobs.top, entry->mutable_top());
  }
  if (output.finished) response.set_finish_reason(ToProto(output.finish_reason));
  if (output.request_done) {
    response.mutable_usage()->set_prompt_tokens(static_cast<int32_t>(output.usage.prompt_tokens));
    response.mutable_usage()->set_completion_tokens(
        static_cast<int32_t>(output.usage.completion_tokens));
    response.mutable_usage()->set_cached_tokens(static_cast<int32_t>(output.usage.cached_tokens));
    const RequestTimings& t = output.timings;
    serve::v1::Timings* timings = response.mutable_timings();
    timings->set_queue_seconds(SecondsBetween(t.arrival, t.first_scheduled));
    timings->set_prefill_seconds(SecondsBetween(t.first_scheduled, t.first_token));
    timings->set_ttft_seconds(SecondsBetween(t.arrival, t.first_token));
    timings->set_decode_seconds(SecondsBetween(t.first_token, t.finished));
    timings->set_e2e_seconds(SecondsBetween(t.arrival, t.finished));
    const SpeculationUsage& spec = output.speculation;
    timings->set_spec_num_drafts(static_cast<int32_t>(spec.num_drafts));
    timings->set_spec_draft_tokens(static_cast<int32_t>(spec.num_draft_tokens));
    timings->set_spec_accepted_tokens(static_cast<int32_t>(spec.num_accepted_tokens));
    timings->set_spec_mean_accepted_length(spec.mean_accepted_length());
  }
  return response;
}

GenerateReactor::GenerateReactor(grpc::CallbackServerContext* context,
                                 const serve::v1::GenerateRequest& request,
                                 const ServingContext& serving, const std::string& request_id,
                                 const std::string& token_identity)
    : serving_(serving), state_(std::make_shared<StreamState>()) {
  state_->reactor = this;
  state_->request_id = request_id;
  state_->metrics = serving.metrics;
  state_->pump = serving.stream_pump.get();
  absl::StatusOr<GenerationRequest> parsed = ToGenerationRequest(request, serving, &state_->tools);
  if (!parsed.ok()) {
    FinishWith(grpc::Status(static_cast<grpc::StatusCode>(parsed.status().code()),
                            std::string(parsed.status().message())));
    return;
  }
  parsed->request_id = request_id;
  parsed->owner = RequestOwner(token_identity, parsed->tenant);
  state_->owner = parsed->owner;
  state_->tenant = parsed->tenant;
  state_->priority = parsed->priority;
  // The gRPC deadline becomes the engine's: converted to a remaining time, so clock skew between
  // the system and steady clocks does not matter.
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    parsed->deadline = Clock::now() + (deadline - std::chrono::system_clock::now());
  }
  const absl::Status submitted =
      serving.engine->Submit(std::move(*parsed), std::make_shared<ReactorSink>(state_));
  if (!submitted.ok()) {
    if (submitted.code() == absl::StatusCode::kResourceExhausted) {
      // Only a full queue is RESOURCE_EXHAUSTED (a request that can never fit is OUT_OF_RANGE):
      // the hint is the measured time for the queue to drain, jittered.
      thread_local std::mt19937_64 rng(std::random_device{}());
      const EngineStats stats = serving.engine->Stats();
      const int64_t hint_ms = RetryAfterMs(stats.num_waiting, stats.finished_per_second,
                                           std::uniform_real_distribution<double>(0.0, 1.0)(rng));
      context->AddTrailingMetadata("retry-after-ms", std::to_string(hint_ms));
    }
    FinishWith(grpc::Status(static_cast<grpc::StatusCode>(submitted.code()),
                            std::string(submitted.message())));
  }
}

void GenerateReactor::FinishWith(const grpc::Status& status) {
  if (serving_.metrics != nullptr) serving_.metrics->ObserveRejected(status.error_code());
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->finished = true;
    state_->final_status = status;
  }
  Finish(status);
}

void GenerateReactor::OnWriteDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->writing = false;
  }
  if (!ok) serving_.engine->Cancel(state_->owner, state_->request_id);  // The client is gone.
  Pump(*state_);
}

void GenerateReactor::OnCancel() { serving_.engine->Cancel(state_->owner, state_->request_id); }

void GenerateReactor::OnDone() {
  GenerationOutput last;
  grpc::Status status;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->reactor = nullptr;
    last = state_->last;
    status = state_->final_status;
  }
  // One structured line per request.
  LogRequest({state_->request_id, static_cast<int>(status.error_code()), state_->tenant,
              state_->priority, last},
             serving_.request_log_json);
  delete this;
}

}  // namespace iquest
