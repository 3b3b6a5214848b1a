// Tool-call parsing of hand-written model outputs in both formats, whole and streamed (split at
// every byte), including outputs that only look like calls.
#include "server/tools/tool_call_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace iquest {
namespace {

struct Expected {
  std::string content;
  std::vector<std::pair<std::string, std::string>> calls;  // name, compact arguments.
};

void ExpectParses(ToolCallFormat format, const std::string& text, const Expected& expected) {
  const auto check = [&](const std::string& content, const std::vector<ToolCall>& calls,
                         const std::string& how) {
    EXPECT_EQ(content, expected.content) << how << ": " << text;
    ASSERT_EQ(calls.size(), expected.calls.size()) << how << ": " << text;
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(calls[i].name, expected.calls[i].first) << how;
      EXPECT_EQ(calls[i].arguments_json, expected.calls[i].second) << how;
    }
  };
  const ParsedToolCalls whole = ParseToolCalls(format, text);
  check(whole.content, whole.calls, "whole");
  // Streamed in two pieces at every split point, and byte by byte.
  for (size_t split = 0; split <= text.size(); ++split) {
    ToolCallStreamParser parser(format);
    ToolCallDelta a = parser.Push(text.substr(0, split));
    ToolCallDelta b = parser.Push(text.substr(split));
    ToolCallDelta c = parser.Finish();
    std::vector<ToolCall> calls = a.calls;
    calls.insert(calls.end(), b.calls.begin(), b.calls.end());
    calls.insert(calls.end(), c.calls.begin(), c.calls.end());
    check(a.content + b.content + c.content, calls, "split at " + std::to_string(split));
  }
  ToolCallStreamParser parser(format);
  std::string content;
  std::vector<ToolCall> calls;
  for (char ch : text) {
    ToolCallDelta d = parser.Push(std::string(1, ch));
    content += d.content;
    calls.insert(calls.end(), d.calls.begin(), d.calls.end());
  }
  ToolCallDelta d = parser.Finish();
  content += d.content;
  calls.insert(calls.end(), d.calls.begin(), d.calls.end());
  check(content, calls, "byte by byte");
}

TEST(ToolCallParserTest, HermesCallsWithTextAround) {
  ExpectParses(ToolCallFormat::kHermes,
               "Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": "
               "\"src/main.cc\", \"lines\": [1, 20]}}\n</tool_call>\n<tool_call>{\"name\": \"ls\", "
               "\"arguments\": {}}</tool_call>done",
               {"Let me look.\n\ndone",
                {{"read_file", R"({"lines":[1,20],"path":"src/main.cc"})"}, {"ls", "{}"}}});
}

TEST(ToolCallParserTest, HermesBrokenCallsStayContent) {
  // Truncated (no closing tag), invalid JSON, no name, arguments not an object.
  for (const std::string& text :
       {std::string("<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1"),
        std::string("<tool_call>{\"name\": \"f\", \"arguments\": {x}}</tool_call>"),
        std::string("<tool_call>{\"arguments\": {}}</tool_call>"),
        std::string("<tool_call>{\"name\": \"f\", \"arguments\": 3}</tool_call>")}) {
    ExpectParses(ToolCallFormat::kHermes, text, {text, {}});
  }
  // Text that only starts like a tag is released once it differs.
  ExpectParses(ToolCallFormat::kHermes, "a <tool_cal b <tool", {"a <tool_cal b <tool", {}});
}

TEST(ToolCallParserTest, HermesArgumentsAsAJsonString) {
  ExpectParses(
      ToolCallFormat::kHermes,
      "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": \\\"b\\\"}\"}</tool_call>",
      {"", {{"f", R"({"a":"b"})"}}});
}

TEST(ToolCallParserTest, Llama3JsonCalls) {
  ExpectParses(ToolCallFormat::kLlama3Json,
               "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
               {"", {{"get_weather", R"({"city":"Paris"})"}}});
  ExpectParses(ToolCallFormat::kLlama3Json,
               "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
               "\"parameters\": {\"n\": 2}}",
               {"", {{"a", "{}"}, {"b", R"({"n":2})"}}});
  // Plain answers, and JSON that is not a call, stay content.
  ExpectParses(ToolCallFormat::kLlama3Json, "The weather is fine.", {"The weather is fine.", {}});
  ExpectParses(ToolCallFormat::kLlama3Json, "{\"answer\": 42}", {"{\"answer\": 42}", {}});
  ExpectParses(ToolCallFormat::kLlama3Json, "{\"name\": \"f\", \"param",
               {"{\"name\": \"f\", \"param", {}});
}

}  // namespace
}  // namespace iquest
