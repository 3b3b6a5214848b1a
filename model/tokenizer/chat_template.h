// Chat prompt rendering for the template families we serve: ChatML (IQuest-Coder, Qwen),
// Llama-3 and Llama-2/Mistral. The family is recognised from tokenizer_config.json's
// chat_template (we do not run Jinja); an unrecognised template is an error that names the
// option that picks one.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"

namespace iquest {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant".
  std::string content;
};

enum class ChatTemplateKind { kChatMl, kLlama3, kLlama2 };

struct ChatTemplate {
  ChatTemplateKind kind = ChatTemplateKind::kChatMl;
  // Used when the conversation has no system message; empty for none (taken from the template
  // text, e.g. IQuest's "You are LoopCoder, a helpful assistant developed by IQuest.").
  std::string default_system_prompt;
  std::string bos_token;  // Written by the Llama templates.
  std::string eos_token;
};

// "chatml", "llama3" or "llama2" (also "mistral"); anything else is kInvalidArgument.
absl::StatusOr<ChatTemplateKind> ParseChatTemplateKind(std::string_view name);

// Recognises the family of a Jinja chat template; kInvalidArgument (naming
// `--chat-template chatml|llama3|llama2`) when absent or not recognised.
absl::StatusOr<ChatTemplateKind> RecognizeChatTemplate(std::string_view jinja);

// The template for a tokenizer: `override_name` (the --chat-template flag value) wins when
// non-empty, else the family recognised from the tokenizer's chat_template.
absl::StatusOr<ChatTemplate> ChatTemplateFor(const Tokenizer& tokenizer,
                                             std::string_view override_name);

// A rendered conversation: the prompt text, and where in it the content lies (messages and
// system prompts, as opposed to the template's markup). Sorted, disjoint.
struct RenderedChat {
  std::string text;
  std::vector<ByteRange> content;
};

// Renders the conversation. With add_generation_prompt the assistant turn is opened. Roles other
// than system/user/assistant, or a system message that is not first, are kInvalidArgument.
absl::StatusOr<RenderedChat> RenderChat(const ChatTemplate& chat_template,
                                        std::span<const ChatMessage> messages,
                                        bool add_generation_prompt);

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
