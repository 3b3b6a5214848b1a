// Tool calling for one chat request: what tool_choice asks (ChatInput.tool_choice and
// tool_choice_function), the constraint that enforces "required" and a named function (as vLLM
// does: a JSON array of {"name", "parameters"} valid under the tools' schemas, or the named
// function's parameters schema), and the per-sample extractor that turns the output text into
// content and completed calls.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "iquest/serve/v1/generation.pb.h"
#include "server/tools/tool_call_parser.h"

namespace iquest {

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ToolCalling {
  ToolChoice choice = ToolChoice::kNone;
  std::string function;  // kNamed.
  ToolCallFormat format = ToolCallFormat::kHermes;
  // kRequired / kNamed: the JSON schema the output is constrained to.
  std::string schema;
};

// From a chat input (its tools already checked by RenderChat). kNone when there are no tools or
// tool_choice is "none". Errors are kInvalidArgument naming chat.tool_choice.
absl::StatusOr<ToolCalling> ParseToolCalling(const serve::v1::ChatInput& chat,
                                             ToolCallFormat format);

// One sample's output text -> content and calls. kAuto parses as the text streams
// (ToolCallStreamParser); kRequired / kNamed hold the text and parse it whole at the end (it is
// JSON by construction; a sample cut short by max_tokens comes back as content).
class ToolCallExtractor {
 public:
  ToolCallExtractor(const ToolCalling& calling, std::string id_prefix);

  ToolCallDelta Push(const std::string& text, bool finished);
  // A call as the API returns it, with an id unique within the request.
  serve::v1::ToolCall ToProto(const ToolCall& call);

 private:
  ToolCalling calling_;
  std::string id_prefix_;
  int32_t num_calls_ = 0;
  std::optional<ToolCallStreamParser> stream_;
  std::string held_;  // kRequired / kNamed.
};

}  // namespace iquest
