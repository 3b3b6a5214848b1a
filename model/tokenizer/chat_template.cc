// The model's own template through Jinja, and the three fallback prompt formats, written out by
// hand from the reference Jinja templates.
#include "model/tokenizer/chat_template.h"

#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/tokenizer.h"

namespace iquest {
namespace {

constexpr char kChooseOption[] =
    "choose one with --chat-template chatml|llama3|llama2|FILE (a Jinja template)";

// A default system prompt written literally in a ChatML template, as in
// '<|im_start|>system\nYou are ...<|im_end|>\n' (the \n is the two characters of a Jinja escape).
std::string ChatMlDefaultSystem(std::string_view jinja) {
  constexpr std::string_view kStart = "<|im_start|>system\\n";
  constexpr std::string_view kEnd = "<|im_end|>";
  for (size_t pos = jinja.find(kStart); pos != std::string_view::npos;
       pos = jinja.find(kStart, pos + 1)) {
    const size_t begin = pos + kStart.size();
    const size_t end = jinja.find(kEnd, begin);
    if (end == std::string_view::npos) break;
    const std::string_view text = jinja.substr(begin, end - begin);
    if (!text.empty() && text.find_first_of("'\"{}") == std::string_view::npos) {
      return std::string(text);
    }
  }
  return "";
}

// A message as transformers hands it to a template; tool-call arguments that are a JSON object
// become that object (vLLM does the same, and templates print them with tojson).
nlohmann::ordered_json MessageJson(const ChatMessage& m) {
  nlohmann::ordered_json out = {{"role", m.role}, {"content", m.content}};
  if (!m.tool_calls.empty()) {
    nlohmann::ordered_json calls = nlohmann::ordered_json::array();
    for (const ChatToolCall& call : m.tool_calls) {
      nlohmann::ordered_json arguments =
          nlohmann::ordered_json::parse(call.arguments, nullptr, /*allow_exceptions=*/false);
      if (!arguments.is_object()) arguments = call.arguments;
      calls.push_back({{"id", call.id},
                       {"type", "function"},
                       {"function", {{"name", call.name}, {"arguments", std::move(arguments)}}}});
    }
    out["tool_calls"] = std::move(calls);
  }
  if (!m.tool_call_id.empty()) out["tool_call_id"] = m.tool_call_id;
  if (!m.name.empty()) out["name"] = m.name;
  return out;
}

absl::Status CheckRoles(std::span<const ChatMessage> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].tool_calls.empty() || !messages[i].tool_call_id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, " has tool calls; they need a Jinja chat template, not a fallback"));
    }
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("message ", i, " has role '", role,
                                                     "'; roles are system, user and assistant"));
    }
    if (role == "system" && i != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " is a system message; only the first may be"));
    }
  }
  return absl::OkStatus();
}

// Appends markup (the template's own text) and content (messages, system prompts), recording
// where each content piece lies.
class ChatWriter {
 public:
  ChatWriter& Markup(std::string_view text) {
    out_.text.append(text);
    return *this;
  }
  ChatWriter& Content(std::string_view text) {
    if (!text.empty()) {
      out_.content.push_back({out_.text.size(), out_.text.size() + text.size()});
      out_.text.append(text);
    }
    return *this;
  }
  RenderedChat Take() { return std::move(out_); }

 private:
  RenderedChat out_;
};

std::string_view Trim(std::string_view text) {
  const absl::string_view trimmed =
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size()));
  return std::string_view(trimmed.data(), trimmed.size());
}

RenderedChat RenderChatMl(const ChatTemplate& t, std::span<const ChatMessage> messages,
                          bool add_generation_prompt) {
  ChatWriter out;
  if ((messages.empty() || messages[0].role != "system") && !t.default_system_prompt.empty()) {
    out.Markup("<|im_start|>system\n").Content(t.default_system_prompt).Markup("<|im_end|>\n");
  }
  for (const ChatMessage& m : messages) {
    out.Markup("<|im_start|>")
        .Markup(m.role)
        .Markup("\n")
        .Content(m.content)
        .Markup("<|im_end|>\n");
  }
  if (add_generation_prompt) out.Markup("<|im_start|>assistant\n");
  return out.Take();
}

// Llama-3: content is trimmed, as the template's `| trim` does.
RenderedChat RenderLlama3(const ChatTemplate& t, std::span<const ChatMessage> messages,
                          bool add_generation_prompt) {
  ChatWriter out;
  out.Markup(t.bos_token);
  auto turn = [&](std::string_view role, std::string_view content) {
    out.Markup("<|start_header_id|>").Markup(role).Markup("<|end_header_id|>\n\n");
    out.Content(Trim(content)).Markup("<|eot_id|>");
  };
  if ((messages.empty() || messages[0].role != "system") && !t.default_system_prompt.empty()) {
    turn("system", t.default_system_prompt);
  }
  for (const ChatMessage& m : messages) turn(m.role, m.content);
  if (add_generation_prompt) out.Markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return out.Take();
}

// Llama-2 / Mistral: [INST] turns; the system prompt is folded into the first user turn. The
// prompt always ends ready for the assistant, so add_generation_prompt changes nothing.
absl::StatusOr<RenderedChat> RenderLlama2(const ChatTemplate& t,
                                          std::span<const ChatMessage> messages) {
  std::string_view system = t.default_system_prompt;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  ChatWriter out;
  bool first_user = true;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool expect_user = (i - first) % 2 == 0;
    if ((m.role == "user") != expect_user) {
      return absl::InvalidArgumentError(
          "the Llama-2 template needs user and assistant messages to alternate, user first");
    }
    const std::string_view content = Trim(m.content);
    if (m.role == "user") {
      out.Markup(t.bos_token).Markup("[INST] ");
      if (first_user && !system.empty()) {
        out.Markup("<<SYS>>\n").Content(system).Markup("\n<</SYS>>\n\n");
      }
      first_user = false;
      out.Content(content).Markup(" [/INST]");
    } else {
      out.Markup(" ").Content(content).Markup(" ").Markup(t.eos_token);
    }
  }
  return out.Take();
}

}  // namespace

absl::StatusOr<ChatTemplateKind> ParseChatTemplateKind(std::string_view name) {
  if (name == "chatml") return ChatTemplateKind::kChatMl;
  if (name == "llama3") return ChatTemplateKind::kLlama3;
  if (name == "llama2" || name == "mistral") return ChatTemplateKind::kLlama2;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template '", std::string(name), "'; ", kChooseOption));
}

bool IsChatTemplateName(std::string_view name) { return ParseChatTemplateKind(name).ok(); }

absl::StatusOr<ChatTemplate> JinjaChatTemplateFor(const Tokenizer& tokenizer,
                                                  std::string_view source) {
  ASSIGN_OR_RETURN(JinjaTemplate program, JinjaTemplate::Parse(source));
  ChatTemplate t;
  t.kind = ChatTemplateKind::kJinja;
  t.jinja.program = std::make_shared<const JinjaTemplate>(std::move(program));
  const auto piece = [&](int32_t id) {
    return id < 0 ? std::string() : tokenizer.Decode(std::span(&id, 1), false);
  };
  std::vector<std::string> control_tokens;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.IsSpecial(id)) control_tokens.push_back(piece(id));
  }
  t.jinja.escaper = std::make_shared<const ControlTokenEscaper>(std::move(control_tokens));
  // What transformers passes from special_tokens_map (absent ones are left undefined). A
  // tokenizer.model folder without a config still has BOS/EOS: their pieces, as transformers'
  // slow Llama tokenizer defaults them.
  const TokenizerConfig& config = tokenizer.config();
  const std::string bos = !config.bos_token.empty() ? config.bos_token : piece(tokenizer.bos_id());
  const std::string eos =
      !config.eos_token.empty()
          ? config.eos_token
          : piece(tokenizer.eos_ids().empty() ? -1 : tokenizer.eos_ids().front());
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"bos_token", &bos},
                                    {"eos_token", &eos},
                                    {"unk_token", &config.unk_token}}) {
    if (!value->empty()) t.jinja.special_tokens[name] = *value;
  }
  if (!config.additional_special_tokens.empty()) {
    t.jinja.special_tokens["additional_special_tokens"] = config.additional_special_tokens;
  }
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplateFor(const Tokenizer& tokenizer,
                                             std::string_view override_spec) {
  const std::string& own = tokenizer.config().chat_template;
  if (override_spec.empty()) {
    if (own.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model has no chat template (no chat_template.jinja, no chat_template "
                       "in tokenizer_config.json); ",
                       kChooseOption));
    }
    absl::StatusOr<ChatTemplate> t = JinjaChatTemplateFor(tokenizer, own);
    if (!t.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model's chat template: ", t.status().message(), "; ", kChooseOption));
    }
    return t;
  }
  if (!IsChatTemplateName(override_spec)) {
    if (override_spec.find("{{") == std::string_view::npos &&
        override_spec.find("{%") == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template '", std::string(override_spec.substr(0, 64)),
                       "' is neither a name (chatml, llama3, llama2, mistral) nor Jinja source"));
    }
    absl::StatusOr<ChatTemplate> t = JinjaChatTemplateFor(tokenizer, override_spec);
    if (!t.ok())
      return absl::InvalidArgumentError(absl::StrCat("chat template: ", t.status().message()));
    return t;
  }
  ChatTemplate t;
  ASSIGN_OR_RETURN(t.kind, ParseChatTemplateKind(override_spec));
  if (t.kind == ChatTemplateKind::kChatMl) t.default_system_prompt = ChatMlDefaultSystem(own);
  t.bos_token = tokenizer.config().bos_token;
  t.eos_token = tokenizer.config().eos_token;
  return t;
}

absl::StatusOr<RenderedChat> RenderChat(const ChatTemplate& chat_template,
                                        std::span<const ChatMessage> messages,
                                        bool add_generation_prompt,
                                        const nlohmann::ordered_json& variables) {
  if (chat_template.kind == ChatTemplateKind::kJinja) {
    nlohmann::ordered_json data =
        variables.is_object() ? variables : nlohmann::ordered_json::object();
    data["messages"] = nlohmann::ordered_json::array();
    for (const ChatMessage& m : messages) data["messages"].push_back(MessageJson(m));
    return RenderJinjaChat(chat_template.jinja, std::move(data), add_generation_prompt);
  }
  RETURN_IF_ERROR(CheckRoles(messages));
  switch (chat_template.kind) {
    case ChatTemplateKind::kJinja:
      break;
    case ChatTemplateKind::kChatMl:
      return RenderChatMl(chat_template, messages, add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      return RenderLlama3(chat_template, messages, add_generation_prompt);
    case ChatTemplateKind::kLlama2:
      return RenderLlama2(chat_template, messages);
  }
  return absl::InternalError("unreachable chat template kind");
}

absl::StatusOr<std::string> ApplyChatTemplate(const ChatTemplate& chat_template,
                                              std::span<const ChatMessage> messages,
                                              bool add_generation_prompt) {
  ASSIGN_OR_RETURN(RenderedChat rendered,
                   RenderChat(chat_template, messages, add_generation_prompt));
  return std::move(rendered.text);
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                const RenderedChat& chat) {
  EncodeOptions options;
  options.add_special_tokens = false;  // The template writes BOS itself.
  options.plain_ranges = chat.content;
  return tokenizer.Encode(chat.text, options);
}

}  // namespace iquest
