#include "server/tools/tool_calling.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

using Json = nlohmann::ordered_json;

std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A tool's parameters schema; a function without one takes an empty object.
Json Parameters(const Json& tool) {
  const Json& function = tool["function"];
  if (function.contains("parameters") && function["parameters"].is_object()) {
    return function["parameters"];
  }
  return Json{{"type", "object"}, {"properties", Json::object()}};
}

}  // namespace

absl::StatusOr<ToolCalling> ParseToolCalling(const serve::v1::ChatInput& chat,
                                             ToolCallFormat format) {
  ToolCalling out;
  out.format = format;
  const std::string& choice = chat.tool_choice();
  if (chat.tools().empty()) {
    if (!chat.tool_choice_function().empty() || (!choice.empty() && choice != "none")) {
      return absl::InvalidArgumentError("chat.tool_choice: needs chat.tools");
    }
    return out;
  }
  const Json tools = Json::parse(chat.tools(), nullptr, /*allow_exceptions=*/false);
  if (!tools.is_array()) return absl::InvalidArgumentError("chat.tools: must be a JSON array");
  for (const Json& tool : tools) {
    if (!tool.is_object() || !tool.contains("function") || !tool["function"].is_object() ||
        !tool["function"].contains("name") || !tool["function"]["name"].is_string()) {
      return absl::InvalidArgumentError("chat.tools: each must have function.name");
    }
  }
  if (!chat.tool_choice_function().empty()) {
    if (!choice.empty() && choice != "required") {
      return absl::InvalidArgumentError(
          "chat.tool_choice: must be empty or \"required\" with tool_choice_function");
    }
    for (const Json& tool : tools) {
      if (tool["function"]["name"] == chat.tool_choice_function()) {
        out.choice = ToolChoice::kNamed;
        out.function = chat.tool_choice_function();
        out.schema = Dump(Parameters(tool));
        return out;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat("chat.tool_choice_function: no tool named '",
                                                   chat.tool_choice_function(), "'"));
  }
  if (choice == "none") return out;
  if (choice.empty() || choice == "auto") {
    out.choice = ToolChoice::kAuto;
    return out;
  }
  if (choice != "required") {
    return absl::InvalidArgumentError(
        "chat.tool_choice: must be \"auto\", \"none\" or \"required\"");
  }
  out.choice = ToolChoice::kRequired;
  Json any_of = Json::array();
  for (const Json& tool : tools) {
    any_of.push_back(Json{{"type", "object"},
                          {"properties", Json{{"name", Json{{"const", tool["function"]["name"]}}},
                                              {"parameters", Parameters(tool)}}},
                          {"required", Json::array({"name", "parameters"})}});
  }
  out.schema = Dump(Json{{"type", "array"}, {"minItems", 1}, {"items", Json{{"anyOf", any_of}}}});
  return out;
}

ToolCallExtractor::ToolCallExtractor(const ToolCalling& calling, std::string id_prefix)
    : calling_(calling), id_prefix_(std::move(id_prefix)) {
  if (calling_.choice == ToolChoice::kAuto) stream_.emplace(calling_.format);
}

ToolCallDelta ToolCallExtractor::Push(const std::string& text, bool finished) {
  ToolCallDelta out;
  if (stream_) {
    out = stream_->Push(text);
    if (finished) {
      ToolCallDelta rest = stream_->Finish();
      out.content += rest.content;
      for (ToolCall& c : rest.calls) out.calls.push_back(std::move(c));
    }
    return out;
  }
  held_ += text;
  if (!finished) return out;
  const Json value = Json::parse(held_, nullptr, /*allow_exceptions=*/false);
  if (calling_.choice == ToolChoice::kNamed && value.is_object()) {
    out.calls.push_back({calling_.function, Dump(value)});
  } else if (calling_.choice == ToolChoice::kRequired && value.is_array() && !value.empty()) {
    for (const Json& call : value) {
      if (!call.is_object() || !call.contains("name") || !call["name"].is_string() ||
          !call.contains("parameters")) {
        out.calls.clear();
        break;
      }
      out.calls.push_back({call["name"].get<std::string>(), Dump(call["parameters"])});
    }
  }
  if (out.calls.empty()) out.content = std::move(held_);  // Cut short: the text as it is.
  held_.clear();
  return out;
}

serve::v1::ToolCall ToolCallExtractor::ToProto(const ToolCall& call) {
  serve::v1::ToolCall out;
  out.set_id(absl::StrCat(id_prefix_, num_calls_++));
  out.set_type("function");
  out.mutable_function()->set_name(call.name);
  out.mutable_function()->set_arguments(call.arguments_json);
  return out;
}

}  // namespace iquest
