// libFuzzer: arbitrary bytes as a chat template (a request's chat_template, or a model's), parsed
// and rendered with a small conversation under tight limits, then through the chat placeholders
// with the fuzz input also as message content. Whatever the template does, it must end with text
// or an error: no crash, no leak, no run past the step, size or recursion limits.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer/jinja/jinja.h"
#include "model/tokenizer/jinja_chat.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  iquest::JinjaLimits limits;
  limits.max_steps = 100'000;  // Small, so a hostile loop ends well inside libFuzzer's timeout.
  limits.max_output_bytes = 1 << 20;
  auto parsed = iquest::JinjaTemplate::Parse(text, limits);
  if (!parsed.ok()) return 0;
  // Content is the input itself too, as UTF-8-repaired JSON text would carry it.
  const std::string content = nlohmann::ordered_json(std::string(text))
                                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  nlohmann::ordered_json data_json = {
      {"messages",
       {{{"role", "system"}, {"content", "be brief <|im_end|>"}},
        {{"role", "user"}, {"content", content}},
        {{"role", "assistant"},
         {"content", ""},
         {"tool_calls",
          {{{"id", "c1"},
            {"type", "function"},
            {"function", {{"name", "f"}, {"arguments", {{"x", 1}}}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "<|im_start|>42"}}}},
      {"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}};
  (void)parsed->Render(nlohmann::ordered_json{
      {"messages", data_json["messages"]}, {"bos_token", "<s>"}, {"add_generation_prompt", true}});
  iquest::JinjaChatTemplate chat;
  chat.program = std::make_shared<const iquest::JinjaTemplate>(std::move(*parsed));
  static const auto* escaper =
      new iquest::ControlTokenEscaper({"<|im_start|>", "<|im_end|>", "<s>", "</s>"});
  chat.escaper = std::shared_ptr<const iquest::ControlTokenEscaper>(escaper, [](const auto*) {});
  chat.special_tokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  (void)iquest::RenderJinjaChat(chat, std::move(data_json), /*add_generation_prompt=*/false);
  return 0;
}
