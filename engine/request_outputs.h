// RequestOutputs: the engine thread's record of every live request_id: its sink, the streamed
// text and stop strings of each sample, usage and timings, and the scheduler ids of its samples
// (one per sample once a prompt with n > 1 forks). It turns a step's sampled tokens into
// GenerationOutputs and finished requests into final outputs. Engine thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/model_runner.h"
#include "engine/stop_strings.h"
#include "scheduler/scheduler.h"

namespace iquest {

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

// Speculative decoding over all of a request's samples.
struct SpeculationUsage {
  int64_t num_drafts = 0;           // Steps that verified drafts.
  int64_t num_draft_tokens = 0;     // Drafts verified.
  int64_t num_accepted_tokens = 0;  // Drafts accepted.
  // Tokens per verifying step (accepted drafts plus the step's own token), as vLLM's mean
  // acceptance length; 0 when nothing was drafted.
  double mean_accepted_length() const {
    return num_drafts == 0 ? 0.0
                           : static_cast<double>(num_drafts + num_accepted_tokens) /
                                 static_cast<double>(num_drafts);
  }
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
  SpeculationUsage speculation;
};

class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // Called on the engine thread; must not block (hand the output over and return).
  virtual void OnOutput(GenerationOutput output) = 0;
};

class RequestOutputs {
 public:
  // `text_stream_factory` may be empty: outputs then carry token ids only.
  explicit RequestOutputs(TextStreamFactory text_stream_factory)
      : text_stream_factory_(std::move(text_stream_factory)) {}

  // A request the scheduler just took (sample 0, scheduler id request.id).
  void Add(const Request& request, std::shared_ptr<TokenSink> sink);
  // Samples created by forks in the last Scheduler::Update.
  void AddForks(const std::vector<const Request*>& forks);
  // Scheduler ids of the live samples of the request of `live_key` (none if it is unknown).
  std::vector<uint64_t> SampleIds(const std::string& live_key) const;

  // Records the step's start time as first_scheduled where unset.
  void OnScheduled(const ScheduledBatch& batch, Clock::time_point now);
  // Emits one step's tokens and prompt logprobs (outputs in batch order, after
  // Scheduler::Update). Returns the scheduler ids of samples that a stop string just ended; the
  // caller finishes them.
  std::vector<uint64_t> OnStep(const ScheduledBatch& batch,
                               const std::vector<RequestStepOutput>& outputs);
  // Emits the final output of each finished sample. `on_done(live_key)` runs once all samples
  // of a request are finished, just before its last output goes out (so the id is free again by
  // the time a client sees the end).
  void OnFinished(std::vector<std::unique_ptr<Request>> finished,
                  const std::function<void(const std::string&)>& on_done);

  // The final (cancelled) output of a request that never reached the scheduler.
  static void EmitNeverScheduled(const Request& request, TokenSink& sink);

 private:
  struct SampleText {
    std::unique_ptr<TextStream> stream;
    std::unique_ptr<StopStringMatcher> stops;
  };
  struct Record {
    std::shared_ptr<TokenSink> sink;
    int32_t num_samples = 1;
    int32_t num_finished = 0;
    Usage usage;
    RequestTimings timings;
    SpeculationUsage speculation;
    int64_t prompt_logprobs_sent = 1;  // Prompt positions below this were already reported.
    std::unordered_map<int32_t, uint64_t> sample_ids;  // sample_index -> scheduler id, live.
    std::unordered_map<int32_t, SampleText> texts;
  };

  // Emits one sampled token; returns true when a stop string ended the sample.
  bool EmitToken(Record& record, const Request& request, int32_t sample_index,
                 const SampledToken& sample, std::vector<PromptLogprob> prompt_logprobs);
  std::string FlushText(Record& record, int32_t sample_index);

  TextStreamFactory text_stream_factory_;
  std::unordered_map<std::string, Record> records_;  // By Request::live_key.
};

}  // namespace iquest
