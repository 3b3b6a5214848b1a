#include "engine/request_outputs.h"

#include "common/check.h"

namespace iquest {

void RequestOutputs::Add(const Request& request, std::shared_ptr<TokenSink> sink) {
  Record& record = records_[request.live_key];
  record.sink = std::move(sink);
  record.num_samples = request.sampling.n;
  record.timings.arrival = request.arrival_time;
  record.usage.prompt_tokens = request.num_prompt_tokens();
  record.sample_ids[request.sample_index] = request.id;
}

void RequestOutputs::AddForks(const std::vector<const Request*>& forks) {
  for (const Request* fork : forks) {
    records_.at(fork->live_key).sample_ids[fork->sample_index] = fork->id;
  }
}

std::vector<uint64_t> RequestOutputs::SampleIds(const std::string& live_key) const {
  std::vector<uint64_t> ids;
  auto it = records_.find(live_key);
  if (it == records_.end()) return ids;
  for (const auto& [sample_index, id] : it->second.sample_ids) ids.push_back(id);
  return ids;
}

void RequestOutputs::OnScheduled(const ScheduledBatch& batch, Clock::time_point now) {
  for (const ScheduledRequest& s : batch.requests) {
    RequestTimings& timings = records_.at(s.request->live_key).timings;
    if (timings.first_scheduled == Clock::time_point{}) timings.first_scheduled = now;
  }
}

std::vector<uint64_t> RequestOutputs::OnStep(const ScheduledBatch& batch,
                                             const std::vector<RequestStepOutput>& outputs) {
  std::vector<uint64_t> stopped;
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& request = *batch.requests[i].request;
    Record& record = records_.at(request.live_key);
    if (request.sample_index == 0) record.usage.cached_tokens = request.num_cached_tokens;
    // A preempted request recomputes its prompt: report each prompt position once.
    std::vector<PromptLogprob> prompt_logprobs;
    for (const PromptLogprob& p : outputs[i].prompt_logprobs) {
      if (p.position >= record.prompt_logprobs_sent) prompt_logprobs.push_back(p);
    }
    if (!prompt_logprobs.empty()) record.prompt_logprobs_sent = prompt_logprobs.back().position + 1;
    const std::vector<SampledToken>& samples = outputs[i].samples;
    if (samples.empty()) {
      if (!prompt_logprobs.empty()) {
        GenerationOutput out;
        out.sample_index = request.sample_index;
        out.prompt_logprobs = std::move(prompt_logprobs);
        record.sink->OnOutput(std::move(out));
      }
      continue;
    }
    SpeculationUsage& spec = record.speculation;
    if (outputs[i].num_draft_tokens > 0) {
      ++spec.num_drafts;
      spec.num_draft_tokens += outputs[i].num_draft_tokens;
      spec.num_accepted_tokens += outputs[i].num_accepted_drafts;
    }
    // A prompt that forks brings one token per sample: token k is sample k's. Otherwise the
    // tokens are one sample's, in order (several when drafts were accepted).
    for (size_t k = 0; k < samples.size(); ++k) {
      const int32_t sample_index = outputs[i].fork ? static_cast<int32_t>(k) : request.sample_index;
      if (EmitToken(record, request, sample_index, samples[k],
                    k == 0 ? std::move(prompt_logprobs) : std::vector<PromptLogprob>())) {
        auto id = record.sample_ids.find(sample_index);
        if (id != record.sample_ids.end()) stopped.push_back(id->second);
        if (!outputs[i].fork) break;  // The text ended: later tokens are not the sample's.
      }
    }
  }
  return stopped;
}

bool RequestOutputs::EmitToken(Record& record, const Request& request, int32_t sample_index,
                               const SampledToken& sample,
                               std::vector<PromptLogprob> prompt_logprobs) {
  if (record.timings.first_token == Clock::time_point{}) record.timings.first_token = Clock::now();
  ++record.usage.completion_tokens;
  GenerationOutput out;
  out.sample_index = sample_index;
  out.token_ids = {sample.token};
  out.logprobs = {sample};
  out.prompt_logprobs = std::move(prompt_logprobs);
  bool matched = false;
  if (text_stream_factory_) {
    SampleText& text = record.texts[sample_index];
    if (!text.stream) {
      text.stream = text_stream_factory_(request.sampling);
      if (!request.sampling.stop_strings.empty()) {
        text.stops = std::make_unique<StopStringMatcher>(request.sampling.stop_strings);
      }
    }
    out.text = text.stream->Push(sample.token);
    if (text.stops) out.text = text.stops->Append(out.text, matched);
  }
  record.sink->OnOutput(std::move(out));
  return matched;
}

std::string RequestOutputs::FlushText(Record& record, int32_t sample_index) {
  auto text = record.texts.find(sample_index);
  if (text == record.texts.end()) return "";
  std::string rest = text->second.stream->Flush();
  if (text->second.stops) {
    bool matched = false;
    rest = text->second.stops->Append(rest, matched);
    rest += text->second.stops->Flush();
  }
  record.texts.erase(text);
  return rest;
}

void RequestOutputs::OnFinished(std::vector<std::unique_ptr<Request>> finished,
                                const std::function<void(const std::string&)>& on_done) {
  for (std::unique_ptr<Request>& request : finished) {
    auto it = records_.find(request->live_key);
    CHECK(it != records_.end()) << request->request_id;
    Record& record = it->second;
    record.sample_ids.erase(request->sample_index);
    GenerationOutput out;
    out.sample_index = request->sample_index;
    out.finished = true;
    out.finish_reason = request->finish_reason;
    out.text = FlushText(record, request->sample_index);
    // A request that finished before forking (n > 1) ends all of its samples.
    record.num_finished += request->sampling.n;
    if (record.num_finished < record.num_samples) {
      record.sink->OnOutput(std::move(out));
      continue;
    }
    out.request_done = true;
    record.timings.finished = Clock::now();
    out.usage = record.usage;
    out.timings = record.timings;
    out.speculation = record.speculation;
    std::shared_ptr<TokenSink> sink = std::move(record.sink);
    records_.erase(it);
    on_done(request->live_key);
    sink->OnOutput(std::move(out));
  }
}

void RequestOutputs::EmitNeverScheduled(const Request& request, TokenSink& sink) {
  GenerationOutput out;
  out.finished = out.request_done = true;
  out.finish_reason = FinishReason::kCancelled;
  out.usage.prompt_tokens = request.num_prompt_tokens();
  out.timings.arrival = request.arrival_time;
  out.timings.finished = Clock::now();
  sink.OnOutput(std::move(out));
}

}  // namespace iquest
