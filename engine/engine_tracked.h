// Engine-internal: the engine thread's record of one request_id, shared by engine.cc and
// engine_outputs.cc.
#pragma once

#include <memory>
#include <unordered_map>

#include "engine/engine.h"

namespace iquest {

// Engine-thread state of one request_id (all its samples).
struct Engine::Tracked {
  std::shared_ptr<TokenSink> sink;
  int32_t num_samples = 1;
  int32_t num_finished = 0;
  Usage usage;
  RequestTimings timings;
  int64_t prompt_logprobs_sent = 1;  // Prompt positions below this were already reported.
  struct SampleText {
    std::unique_ptr<TextStream> stream;
    std::unique_ptr<StopStringMatcher> stops;
  };
  std::unordered_map<int32_t, SampleText> texts;
};

}  // namespace iquest
