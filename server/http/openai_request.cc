#include "server/http/openai_request.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "model/json_util.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_structured.h"

namespace iquest {
namespace {

// Ordered: tools and chat_template_kwargs reach the template with their keys as the client wrote
// them (a tool schema's property order is part of the prompt).
using json = nlohmann::ordered_json;

constexpr char kParamPayload[] = "iquest.serve/param";

// Reads optional typed fields of one JSON object; a null counts as absent, as OpenAI treats it.
class Fields {
 public:
  explicit Fields(const json& object) : object_(object) {}

  const json* Get(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  absl::Status Number(const char* key, std::optional<double>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return ParamError(key, absl::StrCat("'", key, "' must be a number"));
    out = v->get<double>();
    return absl::OkStatus();
  }
  absl::Status Int(const char* key, std::optional<int64_t>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_number_integer()) {
      out = v->is_number_unsigned() &&
                    v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                ? std::numeric_limits<int64_t>::max()
                : v->get<int64_t>();
      return absl::OkStatus();
    }
    // 5.0 is an integer to most JSON writers' readers; 5.5 is not.
    if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
        std::abs(v->get<double>()) < 9e15) {
      out = static_cast<int64_t>(v->get<double>());
      return absl::OkStatus();
    }
    return ParamError(key, absl::StrCat("'", key, "' must be an integer"));
  }
  absl::Status Bool(const char* key, std::optional<bool>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return ParamError(key, absl::StrCat("'", key, "' must be a boolean"));
    out = v->get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::optional<std::string>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return ParamError(key, absl::StrCat("'", key, "' must be a string"));
    out = v->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const json& object_;
};

// Narrows to int32 for the proto; out-of-range values saturate so that request_validation's
// range check names them (e.g. max_tokens 1e12 -> "max_tokens must be in [1, ...]").
int32_t Saturate32(int64_t v) {
  return static_cast<int32_t>(std::clamp<int64_t>(v, std::numeric_limits<int32_t>::min(),
                                                  std::numeric_limits<int32_t>::max()));
}

absl::Status ParseSampling(const Fields& f, OpenAiRequest& out, serve::v1::SamplingParams& s) {
  std::optional<double> number;
  const struct {
    const char* key;
    void (serve::v1::SamplingParams::*set)(float);
  } floats[] = {{"temperature", &serve::v1::SamplingParams::set_temperature},
                {"top_p", &serve::v1::SamplingParams::set_top_p},
                {"min_p", &serve::v1::SamplingParams::set_min_p},
                {"repetition_penalty", &serve::v1::SamplingParams::set_repetition_penalty},
                {"presence_penalty", &serve::v1::SamplingParams::set_presence_penalty},
                {"frequency_penalty", &serve::v1::SamplingParams::set_frequency_penalty}};
  for (const auto& field : floats) {
    number.reset();
    if (absl::Status st = f.Number(field.key, number); !st.ok()) return st;
    if (number) (s.*field.set)(static_cast<float>(*number));
  }
  std::optional<int64_t> integer;
  if (absl::Status st = f.Int("max_completion_tokens", integer); !st.ok()) return st;
  if (!integer) {
    if (absl::Status st = f.Int("max_tokens", integer); !st.ok()) return st;
  }
  if (integer) {
    s.set_max_tokens(Saturate32(*integer));
    out.max_tokens_set = true;
  }
  integer.reset();
  if (absl::Status st = f.Int("n", integer); !st.ok()) return st;
  if (integer) {
    s.set_n(Saturate32(*integer));
    out.n = s.n();
  }
  integer.reset();
  if (absl::Status st = f.Int("best_of", integer); !st.ok()) return st;
  if (integer && *integer != out.n)
    return ParamError("best_of", "best_of other than n is not supported");
  integer.reset();
  if (absl::Status st = f.Int("top_k", integer); !st.ok()) return st;
  if (integer) s.set_top_k(*integer == -1 ? 0 : Saturate32(*integer));  // vLLM: -1 is off.
  integer.reset();
  if (absl::Status st = f.Int("min_tokens", integer); !st.ok()) return st;
  if (integer) s.set_min_tokens(Saturate32(*integer));
  integer.reset();
  if (absl::Status st = f.Int("seed", integer); !st.ok()) return st;
  if (integer) {
    if (*integer < 0) return ParamError("seed", "'seed' must be >= 0");
    s.set_seed(static_cast<uint64_t>(*integer));
  }
  if (const json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      s.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& item : *stop) {
        if (!item.is_string())
          return ParamError("stop", "'stop' must be a string or a list of strings");
        s.add_stop(item.get<std::string>());
      }
    } else {
      return ParamError("stop", "'stop' must be a string or a list of strings");
    }
  }
  if (const json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array())
      return ParamError("stop_token_ids", "'stop_token_ids' must be a list of integers");
    for (const json& item : *ids) {
      if (!item.is_number_integer())
        return ParamError("stop_token_ids", "'stop_token_ids' must be a list of integers");
      s.add_stop_token_ids(Saturate32(item.get<int64_t>()));
    }
  }
  if (const json* bias = f.Get("logit_bias")) {
    if (!bias->is_object()) return ParamError("logit_bias", "'logit_bias' must be an object");
    for (const auto& [key, value] : bias->items()) {
      int64_t id = 0;
      if (!absl::SimpleAtoi(key, &id) || id < 0 || id > std::numeric_limits<int32_t>::max()) {
        return ParamError("logit_bias", "'logit_bias' keys must be token ids");
      }
      if (!value.is_number())
        return ParamError("logit_bias", "'logit_bias' values must be numbers");
      (*s.mutable_logit_bias())[static_cast<int32_t>(id)] = value.get<float>();
    }
  }
  std::optional<bool> flag;
  if (absl::Status st = f.Bool("ignore_eos", flag); !st.ok()) return st;
  if (flag) s.set_ignore_eos(*flag);
  flag.reset();
  if (absl::Status st = f.Bool("skip_special_tokens", flag); !st.ok()) return st;
  if (flag) s.set_skip_special_tokens(*flag);
  flag.reset();
  // Our extension (the gRPC field): speculative decoding on or off for this request.
  if (absl::Status st = f.Bool("speculation", flag); !st.ok()) return st;
  if (flag) s.set_speculation(*flag);
  // Logprobs: chat has `logprobs: bool` + `top_logprobs: int`; completions `logprobs: int`.
  if (out.endpoint == OpenAiEndpoint::kChatCompletions) {
    flag.reset();
    if (absl::Status st = f.Bool("logprobs", flag); !st.ok()) return st;
    out.logprobs = flag.value_or(false);
    integer.reset();
    if (absl::Status st = f.Int("top_logprobs", integer); !st.ok()) return st;
    if (integer) {
      if (!out.logprobs) return ParamError("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      out.top_logprobs = Saturate32(*integer);
    }
  } else {
    integer.reset();
    if (absl::Status st = f.Int("logprobs", integer); !st.ok()) return st;
    if (integer) {
      out.logprobs = true;
      out.top_logprobs = Saturate32(*integer);
    }
  }
  if (out.logprobs) s.set_logprobs(out.top_logprobs);
  return absl::OkStatus();
}

// An assistant message's tool_calls ([{id, type: "function", function: {name, arguments}}]) and
// a tool message's tool_call_id and name.
absl::Status ParseToolFields(const json& m, const std::string& where,
                             serve::v1::ChatMessage& message) {
  for (const char* key : {"tool_call_id", "name"}) {
    auto it = m.find(key);
    if (it == m.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return ParamError("messages", absl::StrCat("'", where, ".", key, "' must be a string"));
    }
    if (std::string_view(key) == "name") {
      message.set_name(it->get<std::string>());
    } else {
      message.set_tool_call_id(it->get<std::string>());
    }
  }
  auto calls = m.find("tool_calls");
  if (calls == m.end() || calls->is_null()) return absl::OkStatus();
  if (!calls->is_array()) {
    return ParamError("messages", absl::StrCat("'", where, ".tool_calls' must be a list"));
  }
  for (size_t j = 0; j < calls->size(); ++j) {
    const json& call = (*calls)[j];
    const std::string at = absl::StrCat("'", where, ".tool_calls[", j, "]");
    auto function = call.is_object() ? call.find("function") : call.end();
    auto type = call.is_object() ? call.find("type") : call.end();
    if (!call.is_object() || function == call.end() || !function->is_object() ||
        (type != call.end() && *type != "function")) {
      return ParamError("messages", at + "' must be {\"type\": \"function\", \"function\": {...}}");
    }
    auto name = function->find("name");
    auto arguments = function->find("arguments");
    if (name == function->end() || !name->is_string()) {
      return ParamError("messages", at + ".function.name' must be a string");
    }
    serve::v1::ToolCall* out = message.add_tool_calls();
    if (auto id = call.find("id"); id != call.end() && id->is_string()) {
      out->set_id(id->get<std::string>());
    }
    out->set_type("function");
    out->mutable_function()->set_name(name->get<std::string>());
    if (arguments != function->end() && !arguments->is_null()) {
      // OpenAI sends arguments as JSON text; an object is taken as well.
      out->mutable_function()->set_arguments(
          arguments->is_string() ? arguments->get<std::string>()
                                 : arguments->dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMessages(const json& messages, serve::v1::ChatInput& chat) {
  if (!messages.is_array() || messages.empty()) {
    return ParamError("messages", "'messages' must be a non-empty list");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object())
      return ParamError("messages", absl::StrCat("'", where, "' must be an object"));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return ParamError("messages", absl::StrCat("'", where, ".role' must be a string"));
    }
    serve::v1::ChatMessage* message = chat.add_messages();
    message->set_role(role->get<std::string>());
    if (absl::Status st = ParseToolFields(m, where, *message); !st.ok()) return st;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) continue;
    if (content->is_string()) {
      message->set_content(content->get<std::string>());
    } else if (content->is_array()) {
      // Content parts: only text is understood; the texts are joined in order.
      std::string text;
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        auto type = part.is_object() ? part.find("type") : part.end();
        auto part_text = part.is_object() ? part.find("text") : part.end();
        if (!part.is_object() || type == part.end() || *type != "text" || part_text == part.end() ||
            !part_text->is_string()) {
          return ParamError("messages",
                            absl::StrCat("'", where, ".content[", j,
                                         "]' must be {\"type\": \"text\", \"text\": string}; other "
                                         "content types are not supported"));
        }
        text += part_text->get<std::string>();
      }
      message->set_content(text);
    } else {
      return ParamError("messages",
                        absl::StrCat("'", where, ".content' must be a string or a list of parts"));
    }
  }
  return absl::OkStatus();
}

// `prompt`: a string, a list of strings, a list of token ids, or a list of such lists.
absl::Status ParsePrompts(const json* prompt, std::vector<serve::v1::GenerateRequest>& out) {
  const auto bad = [] {
    return ParamError("prompt",
                      "'prompt' must be a string, a list of strings, a list of token ids, or a "
                      "list of lists of token ids");
  };
  if (prompt == nullptr) return ParamError("prompt", "'prompt' is required");
  const auto ids_of = [](const json& list, serve::v1::GenerateRequest& r) {
    for (const json& id : list) {
      if (!id.is_number_integer()) return false;
      r.mutable_token_ids()->add_ids(Saturate32(id.get<int64_t>()));
    }
    return true;
  };
  if (prompt->is_string()) {
    out.emplace_back().set_text(prompt->get<std::string>());
    return absl::OkStatus();
  }
  if (!prompt->is_array() || prompt->empty()) return bad();
  if ((*prompt)[0].is_number_integer()) {
    if (!ids_of(*prompt, out.emplace_back())) return bad();
    return absl::OkStatus();
  }
  for (const json& item : *prompt) {
    if (item.is_string()) {
      out.emplace_back().set_text(item.get<std::string>());
    } else if (item.is_array() && !item.empty()) {
      if (!ids_of(item, out.emplace_back())) return bad();
    } else {
      return bad();
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParamError(absl::string_view param, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

std::string ErrorParam(const absl::Status& status) {
  if (absl::optional<absl::Cord> param = status.GetPayload(kParamPayload)) {
    return std::string(*param);
  }
  // request_validation's messages start with the proto field: map it to the OpenAI name.
  absl::string_view field = status.message();
  field = field.substr(0, field.find_first_of(" :"));
  if (absl::ConsumePrefix(&field, "sampling.")) {
    return std::string(field.substr(0, field.find_first_of(".[")));
  }
  if (field == "text" || field == "token_ids") return "prompt";
  if (field == "chat.tool_choice" || field == "chat.tool_choice_function") return "tool_choice";
  if (absl::StartsWith(field, "chat.tools")) return "tools";
  if (absl::StartsWith(field, "chat")) return "messages";
  for (absl::string_view known : {"priority", "cache_salt", "request_id", "tenant"}) {
    if (field == known) return std::string(known);
  }
  return "";
}

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body) {
  absl::StatusOr<json> parsed = ParseJsonStrict(std::string_view(body.data(), body.size()), "body");
  if (!parsed.ok())
    return ParamError("", absl::StrCat("invalid JSON: ", parsed.status().message()));
  if (!parsed->is_object()) return ParamError("", "the body must be a JSON object");
  const Fields f(*parsed);
  OpenAiRequest out;
  out.endpoint = endpoint;
  std::optional<std::string> text;
  if (absl::Status st = f.String("model", text); !st.ok()) return st;
  out.model = text.value_or("");
  std::optional<bool> flag;
  if (absl::Status st = f.Bool("stream", flag); !st.ok()) return st;
  out.stream = flag.value_or(false);
  if (const json* options = f.Get("stream_options")) {
    if (!options->is_object())
      return ParamError("stream_options", "'stream_options' must be an object");
    flag.reset();
    if (absl::Status st = Fields(*options).Bool("include_usage", flag); !st.ok()) return st;
    out.include_usage = flag.value_or(false);
  }
  for (const char* unsupported : {"suffix", "functions", "function_call"}) {
    if (f.Get(unsupported) != nullptr) {
      return ParamError(unsupported, absl::StrCat("'", unsupported, "' is not supported yet"));
    }
  }
  const json* tools = f.Get("tools");
  if (tools != nullptr && tools->is_null()) tools = nullptr;
  const json* tool_choice = f.Get("tool_choice");
  if (tool_choice != nullptr && tool_choice->is_null()) tool_choice = nullptr;
  serve::v1::GenerateRequest shared;
  if (absl::Status st = ParseSampling(f, out, *shared.mutable_sampling()); !st.ok()) return st;
  if (absl::Status st = ParseStructuredOutput(*parsed, *shared.mutable_sampling()); !st.ok()) {
    return st;
  }
  std::optional<int64_t> integer;
  if (absl::Status st = f.Int("priority", integer); !st.ok()) return st;
  if (integer) shared.set_priority(Saturate32(*integer));
  text.reset();
  if (absl::Status st = f.String("cache_salt", text); !st.ok()) return st;
  if (text) shared.set_cache_salt(*text);
  text.reset();
  if (absl::Status st = f.String("user", text); !st.ok()) return st;  // Accepted, unused.
  flag.reset();
  if (absl::Status st = f.Bool("add_special_tokens", flag); !st.ok()) return st;
  if (flag) shared.set_add_special_tokens(*flag);
  if (endpoint == OpenAiEndpoint::kChatCompletions) {
    const json* messages = f.Get("messages");
    if (messages == nullptr) return ParamError("messages", "'messages' is required");
    if (absl::Status st = ParseMessages(*messages, *shared.mutable_chat()); !st.ok()) return st;
    if (tools != nullptr) {
      if (!tools->is_array()) return ParamError("tools", "'tools' must be a list");
      shared.mutable_chat()->set_tools(tools->dump(-1, ' ', false, json::error_handler_t::replace));
    }
    if (tool_choice != nullptr) {
      // "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}.
      if (tool_choice->is_string()) {
        shared.mutable_chat()->set_tool_choice(tool_choice->get<std::string>());
      } else if (tool_choice->is_object() && tool_choice->contains("function") &&
                 (*tool_choice)["function"].is_object() &&
                 (*tool_choice)["function"].contains("name") &&
                 (*tool_choice)["function"]["name"].is_string()) {
        shared.mutable_chat()->set_tool_choice_function(
            (*tool_choice)["function"]["name"].get<std::string>());
      } else {
        return ParamError("tool_choice",
                          "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}");
      }
    }
    flag.reset();
    if (absl::Status st = f.Bool("add_generation_prompt", flag); !st.ok()) return st;
    if (flag) shared.mutable_chat()->set_add_generation_prompt(*flag);
    text.reset();
    if (absl::Status st = f.String("chat_template", text); !st.ok()) return st;
    if (text) shared.mutable_chat()->set_chat_template(*text);
    if (const json* kwargs = f.Get("chat_template_kwargs");
        kwargs != nullptr && !kwargs->is_null()) {
      if (!kwargs->is_object()) {
        return ParamError("chat_template_kwargs", "'chat_template_kwargs' must be an object");
      }
      shared.mutable_chat()->set_chat_template_kwargs(
          kwargs->dump(-1, ' ', false, json::error_handler_t::replace));
    }
    out.prompts.push_back(shared);
  } else {
    flag.reset();
    if (absl::Status st = f.Bool("echo", flag); !st.ok()) return st;
    out.echo = flag.value_or(false);
    std::vector<serve::v1::GenerateRequest> prompts;
    if (absl::Status st = ParsePrompts(f.Get("prompt"), prompts); !st.ok()) return st;
    for (serve::v1::GenerateRequest& p : prompts) {
      serve::v1::GenerateRequest r = shared;
      if (p.has_token_ids()) {
        *r.mutable_token_ids() = p.token_ids();
      } else {
        r.set_text(p.text());
      }
      out.prompts.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace iquest
