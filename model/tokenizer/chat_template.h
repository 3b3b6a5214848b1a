// Chat prompt rendering. By default the model's own chat template runs as written, through the
// Jinja interpreter (jinja_chat.h): chat_template.jinja or tokenizer_config.json's
// chat_template. Three hand-written renderers (ChatML for IQuest-Coder and Qwen, Llama-3,
// Llama-2/Mistral) remain as fallbacks picked by name, for models that ship no template.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/jinja_chat.h"

namespace iquest {

class Tokenizer;

// A call an assistant message made; `arguments` is JSON text.
struct ChatToolCall {
  std::string id;
  std::string name;
  std::string arguments;
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant" (a Jinja template may allow others).
  std::string content;
  // Tool-calling fields (Jinja templates only; the fallbacks refuse them).
  std::string name = {};          // Role "tool": the function.
  std::string tool_call_id = {};  // Role "tool": the call answered.
  std::vector<ChatToolCall> tool_calls = {};
};

enum class ChatTemplateKind { kJinja, kChatMl, kLlama3, kLlama2 };

struct ChatTemplate {
  ChatTemplateKind kind = ChatTemplateKind::kChatMl;
  // The hand-written renderers' facts (kJinja templates read their own):
  // Used when the conversation has no system message; empty for none (taken from the template
  // text, e.g. IQuest's "You are LoopCoder, a helpful assistant developed by IQuest.").
  std::string default_system_prompt;
  std::string bos_token;  // Written by the Llama templates.
  std::string eos_token;
  JinjaChatTemplate jinja;  // kJinja only.
};

// "chatml", "llama3" or "llama2" (also "mistral"); anything else is kInvalidArgument.
absl::StatusOr<ChatTemplateKind> ParseChatTemplateKind(std::string_view name);
bool IsChatTemplateName(std::string_view name);

// The template for a tokenizer. `override_spec` (the --chat-template flag's name or file text, or
// a request's chat_template) wins when non-empty: a fallback's name, or Jinja source (which must
// hold a `{{` or `{%`, so a mistyped name is an error rather than a one-line template). Empty:
// the tokenizer's own template, run as written; kInvalidArgument naming --chat-template when the
// tokenizer has none or it does not parse.
absl::StatusOr<ChatTemplate> ChatTemplateFor(const Tokenizer& tokenizer,
                                             std::string_view override_spec);

// The Jinja template for `source`, with the tokenizer's control tokens and special-token
// variables. Parse errors name the template line.
absl::StatusOr<ChatTemplate> JinjaChatTemplateFor(const Tokenizer& tokenizer,
                                                  std::string_view source);

// Renders the conversation. With add_generation_prompt the assistant turn is opened. For the
// fallbacks, roles other than system/user/assistant, or a system message that is not first, are
// kInvalidArgument; a Jinja template judges the conversation itself (raise_exception).
// `variables` are the caller's extra template variables (vLLM's chat_template_kwargs, such as
// Qwen3's enable_thinking): an object, escaped like the messages; the fallbacks ignore them.
absl::StatusOr<RenderedChat> RenderChat(
    const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
    bool add_generation_prompt,
    const nlohmann::ordered_json& variables = nlohmann::ordered_json::object());

// RenderChat's text alone (special tokens written as text). Encoding this text loses which
// special-token strings came from content: use EncodeChat for the prompt's ids.
absl::StatusOr<std::string> ApplyChatTemplate(const ChatTemplate& chat_template,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt);

// The prompt ids of a rendered conversation: the template's markup yields control tokens, but a
// special-token string inside content ("<|eot_id|>" typed by a user) is encoded as plain text,
// so no message can forge a turn boundary or a system header.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                const RenderedChat& chat);

}  // namespace iquest
