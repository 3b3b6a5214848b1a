// The engine's output side: token deltas, streamed text with stop strings, and final outputs.
#include "common/check.h"
#include "engine/engine.h"
#include "engine/engine_tracked.h"

namespace iquest {
namespace {

const Request* FindSample(const Scheduler& scheduler, const std::string& request_id,
                          int32_t sample_index) {
  for (const Request* r : scheduler.LiveRequests()) {
    if (r->request_id == request_id && r->sample_index == sample_index) return r;
  }
  return nullptr;
}

}  // namespace

void Engine::EmitStep(const ScheduledBatch& batch, const std::vector<RequestStepOutput>& outputs) {
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& request = *batch.requests[i].request;
    Tracked& tracked = *tracked_.at(request.request_id);
    if (request.sample_index == 0) tracked.usage.cached_tokens = request.num_cached_tokens;
    // A preempted request recomputes its prompt: report each prompt position once.
    std::vector<PromptLogprob> prompt_logprobs;
    for (const PromptLogprob& p : outputs[i].prompt_logprobs) {
      if (p.position >= tracked.prompt_logprobs_sent) prompt_logprobs.push_back(p);
    }
    if (!prompt_logprobs.empty())
      tracked.prompt_logprobs_sent = prompt_logprobs.back().position + 1;
    const std::vector<SampledToken>& samples = outputs[i].samples;
    if (samples.empty()) {
      if (!prompt_logprobs.empty()) {
        GenerationOutput out;
        out.sample_index = request.sample_index;
        out.prompt_logprobs = std::move(prompt_logprobs);
        tracked.sink->OnOutput(std::move(out));
      }
      continue;
    }
    for (size_t k = 0; k < samples.size(); ++k) {
      const int32_t sample_index =
          samples.size() > 1 ? static_cast<int32_t>(k) : request.sample_index;
      EmitSample(tracked, request, sample_index, samples[k],
                 k == 0 ? std::move(prompt_logprobs) : std::vector<PromptLogprob>());
    }
  }
}

void Engine::EmitSample(Tracked& tracked, const Request& request, int32_t sample_index,
                        const SampledToken& sample, std::vector<PromptLogprob> prompt_logprobs) {
  const Clock::time_point now = Clock::now();
  if (tracked.timings.first_token == Clock::time_point{}) tracked.timings.first_token = now;
  ++tracked.usage.completion_tokens;
  GenerationOutput out;
  out.sample_index = sample_index;
  out.token_ids = {sample.token};
  out.logprobs = {sample};
  out.prompt_logprobs = std::move(prompt_logprobs);
  if (config_.text_stream_factory) {
    Tracked::SampleText& text = tracked.texts[sample_index];
    if (!text.stream) {
      text.stream = config_.text_stream_factory(request.sampling);
      if (!request.sampling.stop_strings.empty()) {
        text.stops = std::make_unique<StopStringMatcher>(request.sampling.stop_strings);
      }
    }
    out.text = text.stream->Push(sample.token);
    if (text.stops) {
      bool matched = false;
      out.text = text.stops->Append(out.text, matched);
      if (matched) {
        const Request* live = FindSample(scheduler_, request.request_id, sample_index);
        if (live != nullptr) scheduler_.Finish(live->id, FinishReason::kStopString);
      }
    }
  }
  tracked.sink->OnOutput(std::move(out));
}

void Engine::EmitFinished() {
  std::vector<std::unique_ptr<Request>> finished = scheduler_.TakeFinished();
  if (finished.empty()) return;
  // Publish first: by the time a client sees its request end, the stats show its blocks freed.
  PublishStats();
  for (std::unique_ptr<Request>& request : finished) {
    auto it = tracked_.find(request->request_id);
    CHECK(it != tracked_.end()) << request->request_id;
    Tracked& tracked = *it->second;
    GenerationOutput out;
    out.sample_index = request->sample_index;
    out.finished = true;
    out.finish_reason = request->finish_reason;
    auto text = tracked.texts.find(request->sample_index);
    if (text != tracked.texts.end()) {
      std::string rest = text->second.stream->Flush();
      if (text->second.stops) {
        bool matched = false;
        rest = text->second.stops->Append(rest, matched);
        rest += text->second.stops->Flush();
      }
      out.text = std::move(rest);
    }
    // A request that finished before forking (n > 1) ends all of its samples.
    tracked.num_finished += request->sampling.n;
    if (tracked.num_finished >= tracked.num_samples) {
      out.request_done = true;
      tracked.timings.finished = Clock::now();
      out.usage = tracked.usage;
      out.timings = tracked.timings;
      std::shared_ptr<TokenSink> sink = tracked.sink;
      tracked_.erase(it);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        live_ids_.erase(request->request_id);
      }
      sink->OnOutput(std::move(out));
    } else {
      tracked.sink->OnOutput(std::move(out));
    }
  }
}

}  // namespace iquest
