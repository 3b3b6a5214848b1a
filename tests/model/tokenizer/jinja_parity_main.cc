// Renders every case jinja_parity.py wrote (template path, context, python3-jinja2's output or
// error) with our interpreter and compares byte for byte, twice: the template alone, and the
// way the server renders chat (RenderJinjaChat: the request's messages and tools escaped for
// control tokens, rendered, restored), which must not change a byte either. Prints the counts
// per template and every mismatch; exits 1 on any.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/tokenizer/jinja/jinja.h"
#include "model/tokenizer/jinja_chat.h"
#include "nlohmann/json.hpp"

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The first byte where two renderings differ, with some context, for the report.
std::string FirstDifference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  const nlohmann::json w = want.substr(from, 80);
  const nlohmann::json g = got.substr(from, 80);
  return "at byte " + std::to_string(i) + "\n    want " +
         w.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n    got  " +
         g.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A string field, or "" when absent or not a string (nlohmann's value() would throw).
std::string StringField(const nlohmann::ordered_json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// Control tokens of the families the templates are for: the conversations spell some of them.
const std::vector<std::string> kControlTokens = {"<|im_start|>",
                                                 "<|im_end|>",
                                                 "<|endoftext|>",
                                                 "<|begin_of_text|>",
                                                 "<|eot_id|>",
                                                 "<|start_header_id|>",
                                                 "<|end_header_id|>",
                                                 "<s>",
                                                 "</s>",
                                                 "[INST]",
                                                 "[/INST]",
                                                 "<｜begin▁of▁sentence｜>"};

// RenderJinjaChat's view of a case: messages and tools are the request's, the rest the
// tokenizer's.
absl::StatusOr<std::string> RenderAsChat(const iquest::JinjaTemplate& program,
                                         const nlohmann::ordered_json& context) {
  static const auto* escaper = new iquest::ControlTokenEscaper(kControlTokens);
  iquest::JinjaChatTemplate chat;
  chat.program = std::make_shared<const iquest::JinjaTemplate>(program);
  chat.escaper = std::shared_ptr<const iquest::ControlTokenEscaper>(escaper, [](const auto*) {});
  nlohmann::ordered_json data = nlohmann::ordered_json::object();
  bool add_generation_prompt = false;
  for (const auto& [key, value] : context.items()) {
    if (key == "messages" || key == "tools") {
      data[key] = value;
    } else if (key == "add_generation_prompt") {
      add_generation_prompt = value.is_boolean() && value.get<bool>();
    } else {
      chat.special_tokens[key] = value;
    }
  }
  ASSIGN_OR_RETURN(iquest::RenderedChat rendered,
                   iquest::RenderJinjaChat(chat, std::move(data), add_generation_prompt));
  return rendered.text;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CASES.json\n", argv[0]);
    return 2;
  }
  // {"templates": {name: source}, "cases": [{"template": name, "context": {...},
  //  "expected": text} or {..., "error": python's message}]}
  const nlohmann::ordered_json file =
      nlohmann::ordered_json::parse(ReadFile(argv[1]), nullptr, false);
  if (!file.is_object() || !file.contains("templates") || !file["templates"].is_object() ||
      !file.contains("cases") || !file["cases"].is_array()) {
    std::fprintf(stderr, "%s: not a cases file written by jinja_parity.py\n", argv[1]);
    return 2;
  }
  const nlohmann::ordered_json& cases = file["cases"];
  std::map<std::string, std::pair<int, int>> counts;  // template -> {passed, total}
  std::map<std::string, absl::StatusOr<iquest::JinjaTemplate>> templates;
  int failures = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string path = StringField(c, "template");
    auto it = templates.find(path);
    if (it == templates.end()) {
      const auto& sources = file["templates"];
      const std::string source = StringField(sources, path.c_str());
      it = templates.emplace(path, iquest::JinjaTemplate::Parse(source)).first;
    }
    auto& [passed, total] = counts[path];
    ++total;
    std::string problem;
    if (!it->second.ok()) {
      if (c.contains("expected")) {
        problem = "parse error: " + std::string(it->second.status().message());
      }
    } else {
      const nlohmann::ordered_json context =
          c.contains("context") ? c["context"] : nlohmann::ordered_json::object();
      for (const bool as_chat : {false, true}) {
        const absl::StatusOr<std::string> got =
            as_chat ? RenderAsChat(*it->second, context) : it->second->Render(context);
        const std::string how = as_chat ? "as chat, " : "";
        if (c.contains("expected")) {
          const std::string want = StringField(c, "expected");
          if (!got.ok()) {
            problem = how + "error: " + std::string(got.status().message());
          } else if (*got != want) {
            problem = how + "output differs " + FirstDifference(want, *got);
          }
        } else if (got.ok()) {
          problem = how + "rendered, but python failed with: " + StringField(c, "error");
        }
        if (!problem.empty()) break;
      }
    }
    if (problem.empty()) {
      ++passed;
    } else {
      ++failures;
      std::cout << "MISMATCH case " << i << " (" << path << "): " << problem << "\n";
    }
  }
  int all = 0;
  for (const auto& [path, count] : counts) {
    std::cout << count.first << "/" << count.second << "  " << path << "\n";
    all += count.second;
  }
  std::cout << (all - failures) << "/" << all
            << " cases match python3-jinja2, alone and through the chat escaper\n";
  return failures == 0 ? 0 : 1;
}
