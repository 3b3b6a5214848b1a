// The OpenAI request bodies of /v1/completions and /v1/chat/completions, parsed into the gRPC
// API's GenerateRequest: both front doors then share one validation path
// (request_validation.h), so a field's range and its error are the same over HTTP and gRPC.
// Types are checked here (a wrong type is INVALID_ARGUMENT naming the field); unknown fields are
// ignored, as OpenAI does; fields we cannot honour (suffix, tools, best_of > n) are refused by
// name rather than silently dropped. Structured output: openai_structured.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iquest/serve/v1/generation.pb.h"

namespace iquest {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;  // Empty when not sent.
  // One per prompt: /v1/completions takes a list of prompts; choices are numbered
  // prompt_index * n + sample_index.
  std::vector<serve::v1::GenerateRequest> prompts;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage.
  bool echo = false;            // Completions: the prompt's text before the output.
  bool max_tokens_set = false;  // Chat without it: as many as the context leaves.
  bool logprobs = false;        // Per-token logprobs in the choices.
  int32_t top_logprobs = 0;
  int32_t n = 1;
};

// Parses `body`; errors are INVALID_ARGUMENT with the OpenAI parameter name attached
// (ErrorParam).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body);

// The OpenAI `param` of an error: attached by the parsers here, else read from the message of a
// request_validation error ("sampling.temperature must be ..." -> "temperature"). Empty if none.
std::string ErrorParam(const absl::Status& status);

// An INVALID_ARGUMENT error about `param`.
absl::Status ParamError(absl::string_view param, absl::string_view message);

}  // namespace iquest
