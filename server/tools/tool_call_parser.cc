#include "server/tools/tool_call_parser.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

using json = nlohmann::json;

constexpr char kOpen[] = "<tool_call>";
constexpr size_t kOpenSize = sizeof(kOpen) - 1;
constexpr char kClose[] = "</tool_call>";
constexpr size_t kCloseSize = sizeof(kClose) - 1;
constexpr absl::string_view kPythonTag = "<|python_tag|>";

// A call from one JSON text, or nothing if it is not exactly one well-formed call.
std::optional<ToolCall> ParseCall(absl::string_view text) {
  const json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object()) return std::nullopt;
  auto name = value.find("name");
  if (name == value.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return std::nullopt;
  }
  auto arguments = value.find("arguments");
  if (arguments == value.end()) arguments = value.find("parameters");
  ToolCall call;
  call.name = name->get<std::string>();
  if (arguments == value.end() || arguments->is_null()) {
    call.arguments_json = "{}";
  } else if (arguments->is_object()) {
    call.arguments_json = arguments->dump(-1, ' ', false, json::error_handler_t::replace);
  } else if (arguments->is_string()) {
    // Some models write the arguments as a JSON string holding the object.
    const json inner = json::parse(arguments->get_ref<const std::string&>(), nullptr, false);
    if (inner.is_discarded() || !inner.is_object()) return std::nullopt;
    call.arguments_json = inner.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    return std::nullopt;
  }
  return call;
}

// kLlama3Json: the whole text as calls, or nothing.
std::optional<std::vector<ToolCall>> ParseLlama3Calls(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  absl::ConsumePrefix(&text, kPythonTag);
  text = absl::StripAsciiWhitespace(text);
  if (!absl::StartsWith(text, "{")) return std::nullopt;
  std::vector<ToolCall> calls;
  if (std::optional<ToolCall> one = ParseCall(text)) {
    calls.push_back(*std::move(one));
    return calls;
  }
  // Several calls, "; "-separated (a ';' inside a string would split wrongly: then the parts do
  // not parse and the output stays content).
  for (absl::string_view part : absl::StrSplit(text, ';')) {
    std::optional<ToolCall> call = ParseCall(absl::StripAsciiWhitespace(part));
    if (!call) return std::nullopt;
    calls.push_back(*std::move(call));
  }
  return calls;
}

// The length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t PartialMarker(absl::string_view text, absl::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (absl::EndsWith(text, marker.substr(0, n))) return n;
  }
  return 0;
}

}  // namespace

ParsedToolCalls ParseToolCalls(ToolCallFormat format, absl::string_view text) {
  ToolCallStreamParser parser(format);
  ToolCallDelta a = parser.Push(text);
  ToolCallDelta b = parser.Finish();
  ParsedToolCalls out;
  out.content = a.content + b.content;
  out.calls = std::move(a.calls);
  for (ToolCall& c : b.calls) out.calls.push_back(std::move(c));
  return out;
}

ToolCallDelta ToolCallStreamParser::Push(absl::string_view text) {
  ToolCallDelta delta;
  held_.append(text.data(), text.size());
  if (format_ == ToolCallFormat::kLlama3Json) {
    if (!decided_) {
      const absl::string_view start = absl::StripLeadingAsciiWhitespace(held_);
      if (start.empty()) return delta;  // Only white space so far: undecided.
      if (absl::StartsWith(start, "{") || absl::StartsWith(start, kPythonTag)) {
        decided_ = calls_output_ = true;
      } else if (absl::StartsWith(kPythonTag, start)) {
        return delta;  // Perhaps the tag, still arriving.
      } else {
        decided_ = true;
      }
    }
    if (!calls_output_) {
      delta.content = std::move(held_);
      held_.clear();
    }
    return delta;  // A calls output is parsed whole, at Finish.
  }
  // kHermes: release text up to a (possible) opening tag; parse each complete call.
  while (true) {
    if (!in_call_) {
      const size_t open = held_.find(kOpen);
      if (open == std::string::npos) {
        const size_t keep = PartialMarker(held_, kOpen);
        delta.content += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return delta;
      }
      delta.content += held_.substr(0, open);
      held_.erase(0, open);
      in_call_ = true;
    }
    const size_t close = held_.find(kClose);
    if (close == std::string::npos) return delta;  // The call is still arriving.
    const absl::string_view body = absl::string_view(held_).substr(kOpenSize, close - kOpenSize);
    if (std::optional<ToolCall> call = ParseCall(absl::StripAsciiWhitespace(body))) {
      delta.calls.push_back(*std::move(call));
    } else {
      delta.content += held_.substr(0, close + kCloseSize);  // Not a call: plain text.
    }
    held_.erase(0, close + kCloseSize);
    in_call_ = false;
  }
}

ToolCallDelta ToolCallStreamParser::Finish() {
  ToolCallDelta delta;
  if (format_ == ToolCallFormat::kLlama3Json && calls_output_) {
    if (std::optional<std::vector<ToolCall>> calls = ParseLlama3Calls(held_)) {
      delta.calls = *std::move(calls);
    } else {
      delta.content = held_;
    }
  } else {
    delta.content = held_;  // An unfinished <tool_call> or a partial tag: plain text.
  }
  held_.clear();
  in_call_ = false;
  return delta;
}

}  // namespace iquest
