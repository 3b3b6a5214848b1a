// Tool calls in a model's output text, in the formats our model families write:
//
//   kHermes      <tool_call>{"name": "f", "arguments": {...}}</tool_call>  (Qwen2.5/3, Hermes,
//                IQuest-Coder), any number, with text before, between and after them;
//   kLlama3Json  the whole output is one call {"name": "f", "parameters": {...}} (or
//                "arguments"), optionally after <|python_tag|>, several separated by ";".
//
// A call is reported only once its JSON is complete, valid, an object with a string "name" and an
// object of arguments: a broken or truncated call stays plain content, never a half-parsed call.
// The streaming parser holds back text that may still become a call (a prefix of "<tool_call>",
// or an output that began with "{"), as stop strings are held back.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace iquest {

enum class ToolCallFormat { kHermes, kLlama3Json };

struct ToolCall {
  std::string name;
  std::string arguments_json;  // A JSON object, re-serialized compactly.
};

struct ParsedToolCalls {
  std::string content;  // The text outside the calls.
  std::vector<ToolCall> calls;
};

ParsedToolCalls ParseToolCalls(ToolCallFormat format, absl::string_view text);

// One step of a streamed output: new plain text, and calls completed by this step's text.
struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallFormat format) : format_(format) {}

  ToolCallDelta Push(absl::string_view text);
  // The output ended: whatever is held back comes out (an unfinished call as content).
  ToolCallDelta Finish();

 private:
  ToolCallFormat format_;
  std::string held_;           // Text not yet released: a possible call, or its start.
  bool in_call_ = false;       // kHermes: inside <tool_call>...
  bool decided_ = false;       // kLlama3Json: whether the output is calls has been decided...
  bool calls_output_ = false;  // ...and it is.
};

}  // namespace iquest
