// The structured-output fields of an OpenAI-style request body, as the gRPC API's oneof
// SamplingParams.constraint: OpenAI's response_format (text, json_object, json_schema), vLLM's
// structured_outputs {json, regex, choice, grammar, json_object} and its older guided_json /
// guided_regex / guided_choice / guided_grammar. At most one of them may constrain a request;
// a second is INVALID_ARGUMENT naming it.
#pragma once

#include "absl/status/status.h"
#include "iquest/serve/v1/generation.pb.h"
#include "nlohmann/json.hpp"

namespace iquest {

absl::Status ParseStructuredOutput(const nlohmann::ordered_json& body,
                                   serve::v1::SamplingParams& out);

}  // namespace iquest
