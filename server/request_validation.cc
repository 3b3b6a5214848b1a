#include "server/request_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

absl::Status OutOfRange(const char* field, const std::string& range) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be in ", range));
}

// Finite and inside [lo, hi].
absl::Status CheckFloat(float value, float lo, float hi, const char* field) {
  if (!(value >= lo && value <= hi)) {
    return OutOfRange(field, absl::StrCat("[", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckInt(int64_t value, int64_t lo, int64_t hi, const char* field) {
  if (value < lo || value > hi) return OutOfRange(field, absl::StrCat("[", lo, ", ", hi, "]"));
  return absl::OkStatus();
}

bool IsPrintableAscii(const std::string& text) {
  for (char c : text) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

absl::Status ParseStops(const serve::v1::SamplingParams& p, const ServingContext& context,
                        SamplingParams& out) {
  if (p.stop_size() > kMaxStopStrings) {
    return OutOfRange("sampling.stop", absl::StrCat("at most ", kMaxStopStrings, " entries"));
  }
  for (const std::string& stop : p.stop()) {
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      return OutOfRange("sampling.stop",
                        absl::StrCat("entries of 1..", kMaxStopStringBytes, " bytes"));
    }
    out.stop_strings.push_back(stop);
  }
  if (!out.stop_strings.empty() && context.tokenizer == nullptr) {
    return absl::InvalidArgumentError("sampling.stop needs a tokenizer; this model has none");
  }
  if (p.stop_token_ids_size() > kMaxStopTokenIds) {
    return OutOfRange("sampling.stop_token_ids", absl::StrCat("at most ", kMaxStopTokenIds));
  }
  const int64_t vocab = context.model->config().vocab_size;
  for (int32_t id : p.stop_token_ids()) {
    RETURN_IF_ERROR(CheckInt(id, 0, vocab - 1, "sampling.stop_token_ids"));
    out.stop_token_ids.push_back(id);
  }
  return absl::OkStatus();
}

absl::Status ParseBiasAndLogprobs(const serve::v1::SamplingParams& p, int64_t vocab,
                                  SamplingParams& out) {
  if (p.logit_bias_size() > kMaxLogitBias) {
    return OutOfRange("sampling.logit_bias", absl::StrCat("at most ", kMaxLogitBias, " entries"));
  }
  for (const auto& [token, bias] : p.logit_bias()) {
    RETURN_IF_ERROR(CheckInt(token, 0, vocab - 1, "sampling.logit_bias key"));
    RETURN_IF_ERROR(CheckFloat(bias, -100.0f, 100.0f, "sampling.logit_bias value"));
    out.logit_bias.emplace_back(token, bias);
  }
  out.logprobs = p.has_logprobs() ? p.logprobs() : 0;
  RETURN_IF_ERROR(CheckInt(out.logprobs, 0, kMaxLogprobs, "sampling.logprobs"));
  out.prompt_logprobs = p.has_prompt_logprobs() ? p.prompt_logprobs() : 0;
  RETURN_IF_ERROR(CheckInt(out.prompt_logprobs, 0, kMaxLogprobs, "sampling.prompt_logprobs"));
  return absl::OkStatus();
}

}  // namespace

// The oneof constraint -> a compiled grammar (from the cache when the same text was seen).
absl::Status ParseConstraint(const serve::v1::SamplingParams& p, const ServingContext& context,
                             SamplingParams& out) {
  using P = serve::v1::SamplingParams;
  if (p.constraint_case() == P::CONSTRAINT_NOT_SET) return absl::OkStatus();
  ConstraintSpec spec;
  switch (p.constraint_case()) {
    case P::kJsonSchema:
      spec.kind = ConstraintSpec::kJsonSchema;
      spec.text = p.json_schema();
      break;
    case P::kRegex:
      spec.kind = ConstraintSpec::kRegex;
      spec.text = p.regex();
      break;
    case P::kGrammar:
      spec.kind = ConstraintSpec::kGrammar;
      spec.text = p.grammar();
      break;
    case P::kJsonObject:
      if (!p.json_object()) return absl::OkStatus();  // false: no constraint.
      spec.kind = ConstraintSpec::kJsonObject;
      break;
    case P::kChoice:
      spec.kind = ConstraintSpec::kChoice;
      if (p.choice().choices_size() < 1 || p.choice().choices_size() > kMaxChoices) {
        return absl::InvalidArgumentError(
            absl::StrCat("sampling.choice.choices must have 1 to ", kMaxChoices, " entries"));
      }
      for (const std::string& c : p.choice().choices()) {
        if (c.empty() || c.size() > kMaxChoiceBytes) {
          return absl::InvalidArgumentError(absl::StrCat(
              "sampling.choice.choices entries must be 1 to ", kMaxChoiceBytes, " bytes"));
        }
        spec.choices.push_back(c);
      }
      break;
    case P::CONSTRAINT_NOT_SET:
      break;
  }
  const std::string field = absl::StrCat("sampling.", ConstraintKindName(spec.kind));
  if (spec.text.size() > kMaxConstraintBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " has ", spec.text.size(), " bytes; at most ", kMaxConstraintBytes));
  }
  if (context.grammars == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " needs a tokenizer; this model has none"));
  }
  absl::StatusOr<std::shared_ptr<GrammarMatcher>> matcher = context.grammars->Get(spec);
  if (!matcher.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", matcher.status().message()));
  }
  out.grammar = *std::move(matcher);
  return absl::OkStatus();
}

absl::StatusOr<SamplingParams> ToSamplingParams(const serve::v1::SamplingParams& p,
                                                const ServingContext& context) {
  const int64_t vocab = context.model->config().vocab_size;
  SamplingParams out;
  out.temperature = p.has_temperature() ? p.temperature() : 1.0f;
  RETURN_IF_ERROR(CheckFloat(out.temperature, 0.0f, 100.0f, "sampling.temperature"));
  if (out.temperature == 0.0f) out.temperature = 0.0f;  // -0.0 is greedy too.
  out.top_k = p.has_top_k() ? p.top_k() : 0;
  RETURN_IF_ERROR(CheckInt(out.top_k, -1, vocab, "sampling.top_k"));
  if (out.top_k < 0) out.top_k = 0;
  out.top_p = p.has_top_p() ? p.top_p() : 1.0f;
  if (!(out.top_p > 0.0f && out.top_p <= 1.0f)) return OutOfRange("sampling.top_p", "(0, 1]");
  out.min_p = p.has_min_p() ? p.min_p() : 0.0f;
  RETURN_IF_ERROR(CheckFloat(out.min_p, 0.0f, 1.0f, "sampling.min_p"));
  out.repetition_penalty = p.has_repetition_penalty() ? p.repetition_penalty() : 1.0f;
  if (!(out.repetition_penalty > 0.0f && out.repetition_penalty <= 10.0f)) {
    return OutOfRange("sampling.repetition_penalty", "(0, 10]");
  }
  out.presence_penalty = p.has_presence_penalty() ? p.presence_penalty() : 0.0f;
  RETURN_IF_ERROR(CheckFloat(out.presence_penalty, -2.0f, 2.0f, "sampling.presence_penalty"));
  out.frequency_penalty = p.has_frequency_penalty() ? p.frequency_penalty() : 0.0f;
  RETURN_IF_ERROR(CheckFloat(out.frequency_penalty, -2.0f, 2.0f, "sampling.frequency_penalty"));
  if (p.has_seed()) out.seed = p.seed();
  out.max_tokens = p.has_max_tokens() ? p.max_tokens() : 16;
  RETURN_IF_ERROR(CheckInt(out.max_tokens, 1, context.max_tokens_cap, "sampling.max_tokens"));
  out.min_tokens = p.has_min_tokens() ? p.min_tokens() : 0;
  RETURN_IF_ERROR(CheckInt(out.min_tokens, 0, out.max_tokens, "sampling.min_tokens"));
  RETURN_IF_ERROR(ParseStops(p, context, out));
  out.ignore_eos = p.ignore_eos();
  RETURN_IF_ERROR(ParseBiasAndLogprobs(p, vocab, out));
  out.n = p.has_n() ? p.n() : 1;
  RETURN_IF_ERROR(CheckInt(out.n, 1, kMaxN, "sampling.n"));
  out.skip_special_tokens = p.has_skip_special_tokens() ? p.skip_special_tokens() : true;
  out.speculation = p.has_speculation() ? p.speculation() : true;
  RETURN_IF_ERROR(ParseConstraint(p, context, out));
  return out;
}

absl::Status CheckTokenIds(const google::protobuf::RepeatedField<int32_t>& ids,
                           const ServingContext& context, const char* field) {
  if (ids.size() > context.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", ids.size(),
                                                   " tokens exceed the maximum context length of ",
                                                   context.max_model_len));
  }
  const int64_t vocab = context.model->config().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": token id ", id, " is outside [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RenderedChat> RenderChat(const serve::v1::ChatInput& chat,
                                        const ServingContext& context) {
  if (context.tokenizer == nullptr) {
    return absl::InvalidArgumentError("chat input needs a tokenizer; this model has none");
  }
  if (chat.messages_size() == 0 || chat.messages_size() > kMaxChatMessages) {
    return OutOfRange("chat.messages", absl::StrCat("1..", kMaxChatMessages, " messages"));
  }
  std::optional<ChatTemplate> chosen = context.chat_template;
  if (!chat.chat_template().empty()) {
    if (chat.chat_template().size() > kMaxChatTemplateBytes) {
      return OutOfRange("chat.chat_template",
                        absl::StrCat("at most ", kMaxChatTemplateBytes, " bytes"));
    }
    ASSIGN_OR_RETURN(chosen, ChatTemplateFor(*context.tokenizer, chat.chat_template()));
  }
  if (!chosen) return context.chat_template_error;
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
  if (!chat.chat_template_kwargs().empty()) {
    if (chat.chat_template_kwargs().size() > kMaxChatTemplateBytes) {
      return OutOfRange("chat.chat_template_kwargs",
                        absl::StrCat("at most ", kMaxChatTemplateBytes, " bytes"));
    }
    variables = nlohmann::ordered_json::parse(chat.chat_template_kwargs(), nullptr,
                                              /*allow_exceptions=*/false);
    if (!variables.is_object()) {
      return absl::InvalidArgumentError("chat.chat_template_kwargs: must be a JSON object");
    }
    for (const char* reserved : {"messages", "tools", "documents", "add_generation_prompt"}) {
      if (variables.contains(reserved)) {
        return absl::InvalidArgumentError(absl::StrCat("chat.chat_template_kwargs: may not set '",
                                                       reserved, "' (it has its own field)"));
      }
    }
  }
  if (!chat.tools().empty()) {
    if (chat.tools().size() > kMaxToolsBytes) {
      return OutOfRange("chat.tools", absl::StrCat("at most ", kMaxToolsBytes, " bytes"));
    }
    nlohmann::ordered_json tools =
        nlohmann::ordered_json::parse(chat.tools(), nullptr, /*allow_exceptions=*/false);
    if (!tools.is_array()) return absl::InvalidArgumentError("chat.tools: must be a JSON array");
    for (size_t i = 0; i < tools.size(); ++i) {
      const nlohmann::ordered_json& tool = tools[i];
      const bool is_object = tool.is_object();
      const auto type = is_object ? tool.find("type") : tool.end();
      const auto function = is_object ? tool.find("function") : tool.end();
      const bool function_ok = function != tool.end() && function->is_object() &&
                               function->contains("name") && (*function)["name"].is_string();
      if (!is_object || (type != tool.end() && *type != "function") || !function_ok) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chat.tools[", i,
            "]: must be {\"type\": \"function\", \"function\": {\"name\": string, ...}}"));
      }
    }
    variables["tools"] = std::move(tools);
  }
  std::vector<ChatMessage> messages;
  for (const auto& m : chat.messages()) {
    ChatMessage message{m.role(), m.content(), m.name(), m.tool_call_id()};
    for (const auto& call : m.tool_calls()) {
      if (!call.type().empty() && call.type() != "function") {
        return absl::InvalidArgumentError(absl::StrCat("chat.messages[", messages.size(),
                                                       "].tool_calls: type must be \"function\""));
      }
      message.tool_calls.push_back(
          {call.id(), call.function().name(), call.function().arguments()});
    }
    messages.push_back(std::move(message));
  }
  return iquest::RenderChat(*chosen, messages,
                            chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true,
                            variables);
}

namespace {

absl::StatusOr<std::vector<int32_t>> PromptIds(const serve::v1::GenerateRequest& p,
                                               const ServingContext& context) {
  switch (p.input_case()) {
    case serve::v1::GenerateRequest::kTokenIds:
      // Ids and length are the engine's to check (CheckFits), with the other prompt checks.
      return std::vector<int32_t>(p.token_ids().ids().begin(), p.token_ids().ids().end());
    case serve::v1::GenerateRequest::kText: {
      if (context.tokenizer == nullptr) {
        return absl::InvalidArgumentError("text input needs a tokenizer; send token_ids");
      }
      if (p.text().empty()) return absl::InvalidArgumentError("text: prompt must be non-empty");
      if (static_cast<int64_t>(p.text().size()) > context.max_prompt_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("text: ", p.text().size(),
                                                       " bytes exceed max_prompt_bytes ",
                                                       context.max_prompt_bytes));
      }
      EncodeOptions options;
      options.add_special_tokens = p.has_add_special_tokens() ? p.add_special_tokens() : true;
      options.parse_special_tokens = p.has_parse_special_tokens() ? p.parse_special_tokens() : true;
      return context.tokenizer->Encode(p.text(), options);
    }
    case serve::v1::GenerateRequest::kChat: {
      ASSIGN_OR_RETURN(const RenderedChat chat, RenderChat(p.chat(), context));
      return EncodeChat(*context.tokenizer, chat);
    }
    case serve::v1::GenerateRequest::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("input: one of text, token_ids or chat is required");
}

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const serve::v1::GenerateRequest& p,
                                                      const ServingContext& context,
                                                      ToolCalling* tool_calling) {
  GenerationRequest out;
  if (p.request_id().size() > kMaxRequestIdBytes || !IsPrintableAscii(p.request_id())) {
    return OutOfRange("request_id",
                      absl::StrCat("at most ", kMaxRequestIdBytes, " printable ASCII bytes"));
  }
  out.request_id = p.request_id();
  RETURN_IF_ERROR(CheckInt(p.priority(), -kMaxPriority, kMaxPriority, "priority"));
  out.priority = p.priority();
  if (p.tenant().size() > kMaxTenantBytes) {
    return OutOfRange("tenant", absl::StrCat("at most ", kMaxTenantBytes, " bytes"));
  }
  out.tenant = p.tenant();
  if (p.cache_salt().size() > kMaxCacheSaltBytes) {
    return OutOfRange("cache_salt", absl::StrCat("at most ", kMaxCacheSaltBytes, " bytes"));
  }
  out.cache_salt = p.cache_salt();
  ASSIGN_OR_RETURN(out.sampling, ToSamplingParams(p.sampling(), context));
  ToolCalling tools;  // What tool_choice asks (kNone for other inputs).
  if (p.input_case() == serve::v1::GenerateRequest::kChat) {
    ASSIGN_OR_RETURN(tools, ParseToolCalling(p.chat(), context.tool_call_format));
  }
  if (!tools.schema.empty()) {
    // tool_choice required / named: the output is held to the calls' schema (as vLLM does).
    if (out.sampling.grammar != nullptr) {
      return absl::InvalidArgumentError(
          "chat.tool_choice: \"required\" or a named function cannot be combined with a "
          "sampling constraint");
    }
    if (context.grammars == nullptr) {
      return absl::InvalidArgumentError("chat.tool_choice: needs a tokenizer");
    }
    ConstraintSpec spec;
    spec.kind = ConstraintSpec::kJsonSchema;
    spec.text = tools.schema;
    absl::StatusOr<std::shared_ptr<GrammarMatcher>> matcher = context.grammars->Get(spec);
    if (!matcher.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat.tools: a function's parameters: ", matcher.status().message()));
    }
    out.sampling.grammar = *std::move(matcher);
  }
  // Whether the prompt fits (non-empty, in the vocabulary, in the context and the KV pool) is
  // the engine's one check, CheckFits, run by Engine::Submit.
  ASSIGN_OR_RETURN(out.prompt_token_ids, PromptIds(p, context));
  if (tool_calling != nullptr) *tool_calling = std::move(tools);
  return out;
}

}  // namespace iquest
