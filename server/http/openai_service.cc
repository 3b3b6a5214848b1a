#include "server/http/openai_service.h"

#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/retry_hint.h"
#include "model/json_util.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_request.h"
#include "server/request_log.h"
#include "server/request_validation.h"

namespace iquest {
namespace {

using json = nlohmann::json;

// Client text may hold invalid UTF-8 only inside single token strings (a byte-fallback piece):
// replaced, never thrown on.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return 400;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return 401;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
    case 404:
    case 413:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    default:
      return "server_error";
  }
}

json ErrorJson(int http_status, absl::string_view message, const std::string& param,
               const char* code = nullptr) {
  json error = {{"message", std::string(message)},
                {"type", ErrorType(http_status)},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code == nullptr ? json(nullptr) : json(code)}};
  return {{"error", error}};
}

void RespondJson(HttpExchange& exchange, int status, const json& body, HttpHeaders headers = {}) {
  exchange.Respond(status, "application/json", Dump(body), std::move(headers));
}

void RespondError(HttpExchange& exchange, const absl::Status& status, HttpHeaders headers = {}) {
  const int http = HttpStatusOf(status.code());
  RespondJson(exchange, http, ErrorJson(http, status.message(), ErrorParam(status)),
              std::move(headers));
}

const char* FinishReasonText(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      return nullptr;
    default:
      return "stop";
  }
}

// Why a finished request is an error rather than a completion, or OK.
absl::Status FinishStatus(FinishReason reason) {
  switch (reason) {
    case FinishReason::kCancelled:
      return absl::UnavailableError("request cancelled (the server is shutting down)");
    case FinishReason::kDeadlineExceeded:
      return absl::DeadlineExceededError("request timed out");
    case FinishReason::kInternalError:
      return absl::InternalError("the engine step failed");
    default:
      return absl::OkStatus();
  }
}

// One HTTP generation: up to several prompts, each with n samples. Lives on the connection's
// strand (every method runs there), shared by the engine sinks' posted tasks.
class HttpGeneration : public std::enable_shared_from_this<HttpGeneration> {
 public:
  struct Choice {
    std::string text;
    json logprobs_content = json::array();  // Chat: the `content` list; completions: below.
    json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
         text_offset = json::array();
    size_t offset = 0;
    const char* finish_reason = nullptr;
    bool role_sent = false;
  };

  HttpGeneration(std::shared_ptr<HttpExchange> exchange, const ServingContext& serving,
                 const OpenAiRequest& request, std::string id, int64_t created_unix_s)
      : exchange_(std::move(exchange)),
        serving_(serving),
        chat_(request.endpoint == OpenAiEndpoint::kChatCompletions),
        stream_(request.stream),
        include_usage_(request.include_usage),
        logprobs_(request.logprobs),
        n_(request.n),
        id_(std::move(id)),
        created_(created_unix_s),
        choices_(request.prompts.size() * static_cast<size_t>(request.n)) {}

  struct PromptState {
    std::string request_id;
    std::string owner;
    std::string tenant;
    int32_t priority = 0;
    bool submitted = false;
    bool done = false;
  };
  std::vector<PromptState> prompts;
  ServerMetrics* metrics = nullptr;
  bool request_log_json = false;

  void SetEcho(size_t prompt, const std::string& text) {
    for (int32_t k = 0; k < n_; ++k) {
      Choice& c = choices_[prompt * n_ + k];
      c.text = text;
      c.offset = text.size();
    }
  }

  // Before the first output: the stream's head (and echoed prompts). Not earlier, so that a
  // request refused at submission still gets its error status.
  void Start() {
    started_ = true;
    if (stream_) exchange_->StartStream(200, "text/event-stream");
    if (stream_ && !chat_) {
      for (size_t i = 0; i < choices_.size(); ++i) {  // Echoed prompts go first.
        if (!choices_[i].text.empty()) SendChunk(i, choices_[i].text, json(nullptr), nullptr);
      }
    }
  }

  void CancelAll(Engine& engine) {
    for (const PromptState& p : prompts) {
      if (p.submitted && !p.done) engine.Cancel(p.owner, p.request_id);
    }
  }

  void OnOutput(size_t prompt, GenerationOutput output, Clock::time_point handed) {
    if (!started_) Start();
    if (metrics != nullptr) Record(prompt, output, handed);
    const size_t index =
        prompt * static_cast<size_t>(n_) + static_cast<size_t>(output.sample_index);
    Choice& c = choices_[index];
    json logprobs = nullptr;
    if (logprobs_ && !output.logprobs.empty()) logprobs = AddLogprobs(c, output);
    if (output.finished) c.finish_reason = FinishReasonText(output.finish_reason);
    const absl::Status finish =
        output.finished ? FinishStatus(output.finish_reason) : absl::OkStatus();
    if (!finish.ok() && error_.ok()) error_ = finish;
    if (stream_) {
      if (!output.text.empty() || (output.finished && finish.ok()) || !logprobs.is_null()) {
        SendChunk(index, output.text, logprobs, finish.ok() ? c.finish_reason : nullptr);
      }
    } else {
      c.text += output.text;
    }
    if (output.request_done) {
      prompts[prompt].done = true;
      prompt_tokens_ += output.usage.prompt_tokens;
      completion_tokens_ += output.usage.completion_tokens;
      cached_tokens_ += output.usage.cached_tokens;
      // The code gRPC would log: a client's cancel is CANCELLED (FinishStatus's 503 is for the
      // response, when the server itself cancelled).
      const absl::StatusCode code = output.finish_reason == FinishReason::kCancelled
                                        ? absl::StatusCode::kCancelled
                                        : FinishStatus(output.finish_reason).code();
      LogRequest({prompts[prompt].request_id, static_cast<int>(code), prompts[prompt].tenant,
                  prompts[prompt].priority, output},
                 request_log_json);
      if (++num_done_ == prompts.size()) Finish();
    }
  }

 private:
  void Record(size_t prompt, const GenerationOutput& output, Clock::time_point handed) {
    if (!output.token_ids.empty()) {
      metrics->ObserveTokens(static_cast<int64_t>(output.token_ids.size()));
      const auto key = std::make_pair(prompt, output.sample_index);
      auto [it, first] = last_token_time_.emplace(key, handed);
      if (!first) {
        metrics->ObserveInterTokenLatency(
            std::chrono::duration<double>(handed - it->second).count());
        it->second = handed;
      }
    }
    if (output.request_done) metrics->ObserveRequestDone(output, Api::kHttp);
  }

  std::string TokenText(int32_t id) const {
    const int32_t ids[] = {id};
    return serving_.tokenizer ? serving_.tokenizer->Decode(ids, /*skip_special_tokens=*/false)
                              : absl::StrCat("token_id:", id);
  }

  static json Bytes(const std::string& s) {
    json out = json::array();
    for (unsigned char c : s) out.push_back(static_cast<int>(c));
    return out;
  }

  // Appends this output's logprobs to the choice and returns the same entries for a chunk.
  json AddLogprobs(Choice& c, const GenerationOutput& output) {
    if (chat_) {
      json content = json::array();
      for (const SampledToken& s : output.logprobs) {
        const std::string text = TokenText(s.token);
        json top = json::array();
        for (const TokenLogprob& t : s.top_logprobs) {
          const std::string t_text = TokenText(t.token);
          top.push_back({{"token", t_text}, {"logprob", t.logprob}, {"bytes", Bytes(t_text)}});
        }
        content.push_back({{"token", text},
                           {"logprob", s.logprob},
                           {"bytes", Bytes(text)},
                           {"top_logprobs", top}});
      }
      for (const json& entry : content) c.logprobs_content.push_back(entry);
      return {{"content", content}};
    }
    json chunk = {{"tokens", json::array()},
                  {"token_logprobs", json::array()},
                  {"top_logprobs", json::array()},
                  {"text_offset", json::array()}};
    for (const SampledToken& s : output.logprobs) {
      const std::string text = TokenText(s.token);
      json top = json::object();
      for (const TokenLogprob& t : s.top_logprobs) top[TokenText(t.token)] = t.logprob;
      chunk["tokens"].push_back(text);
      chunk["token_logprobs"].push_back(s.logprob);
      chunk["top_logprobs"].push_back(top);
      chunk["text_offset"].push_back(c.offset);
      c.offset += text.size();
    }
    for (const json& v : chunk["tokens"]) c.tokens.push_back(v);
    for (const json& v : chunk["token_logprobs"]) c.token_logprobs.push_back(v);
    for (const json& v : chunk["top_logprobs"]) c.top_logprobs.push_back(v);
    for (const json& v : chunk["text_offset"]) c.text_offset.push_back(v);
    return chunk;
  }

  void SendChunk(size_t index, const std::string& text, const json& logprobs,
                 const char* finish_reason) {
    json choice = {
        {"index", index},
        {"logprobs", logprobs},
        {"finish_reason", finish_reason == nullptr ? json(nullptr) : json(finish_reason)}};
    if (chat_) {
      json delta = json::object();
      if (!choices_[index].role_sent) {
        delta["role"] = "assistant";
        choices_[index].role_sent = true;
      }
      if (!text.empty() || finish_reason == nullptr) delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    json chunk = Envelope();
    chunk["choices"] = json::array({choice});
    if (include_usage_) chunk["usage"] = nullptr;
    exchange_->Send(absl::StrCat("data: ", Dump(chunk), "\n\n"));
  }

  json Envelope() const {
    return {{"id", id_},
            {"object",
             chat_ ? (stream_ ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", created_},
            {"model", serving_.model_name}};
  }

  json Usage() const {
    return {{"prompt_tokens", prompt_tokens_},
            {"completion_tokens", completion_tokens_},
            {"total_tokens", prompt_tokens_ + completion_tokens_},
            {"prompt_tokens_details", {{"cached_tokens", cached_tokens_}}}};
  }

  void Finish() {
    if (stream_) {
      if (!error_.ok()) {
        const int http = HttpStatusOf(error_.code());
        exchange_->Send(
            absl::StrCat("data: ", Dump(ErrorJson(http, error_.message(), "")), "\n\n"));
      } else if (include_usage_) {
        json chunk = Envelope();
        chunk["choices"] = json::array();
        chunk["usage"] = Usage();
        exchange_->Send(absl::StrCat("data: ", Dump(chunk), "\n\n"));
      }
      exchange_->Send("data: [DONE]\n\n");
      exchange_->EndStream();
      return;
    }
    if (!error_.ok()) return RespondError(*exchange_, error_);
    json body = Envelope();
    body["choices"] = json::array();
    for (size_t i = 0; i < choices_.size(); ++i) {
      const Choice& c = choices_[i];
      json choice = {
          {"index", i},
          {"finish_reason", c.finish_reason == nullptr ? json(nullptr) : json(c.finish_reason)}};
      if (chat_) {
        choice["message"] = {{"role", "assistant"}, {"content", c.text}};
        choice["logprobs"] = logprobs_ ? json{{"content", c.logprobs_content}} : json(nullptr);
      } else {
        choice["text"] = c.text;
        choice["logprobs"] = logprobs_ ? json{{"tokens", c.tokens},
                                              {"token_logprobs", c.token_logprobs},
                                              {"top_logprobs", c.top_logprobs},
                                              {"text_offset", c.text_offset}}
                                       : json(nullptr);
      }
      body["choices"].push_back(choice);
    }
    body["usage"] = Usage();
    RespondJson(*exchange_, 200, body);
  }

  std::shared_ptr<HttpExchange> exchange_;
  const ServingContext& serving_;
  const bool chat_, stream_, include_usage_, logprobs_;
  const int32_t n_;
  const std::string id_;
  const int64_t created_;
  std::vector<Choice> choices_;
  bool started_ = false;
  size_t num_done_ = 0;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0, cached_tokens_ = 0;
  absl::Status error_;
  std::map<std::pair<size_t, int32_t>, Clock::time_point> last_token_time_;
};

// The engine thread's side: post the output to the connection's strand and return.
class HttpSink : public TokenSink {
 public:
  HttpSink(std::shared_ptr<HttpExchange> exchange, std::shared_ptr<HttpGeneration> generation,
           size_t prompt)
      : exchange_(std::move(exchange)), generation_(std::move(generation)), prompt_(prompt) {}

  void OnOutput(GenerationOutput output) override {
    exchange_->Post(
        [generation = generation_, prompt = prompt_, output = std::move(output),
         now = Clock::now()]() mutable { generation->OnOutput(prompt, std::move(output), now); });
  }

 private:
  std::shared_ptr<HttpExchange> exchange_;
  std::shared_ptr<HttpGeneration> generation_;
  size_t prompt_;
};

// `Authorization: Bearer <token>` -> the token's identity, or the 401 to answer.
absl::StatusOr<std::string> Authenticate(const BearerAuth& auth, const HttpRequest& request) {
  const std::string* value = request.header("authorization");
  if (value == nullptr) return absl::UnauthenticatedError("missing Authorization header");
  constexpr absl::string_view kPrefix = "Bearer ";
  if (value->size() <= kPrefix.size() || !absl::StartsWith(*value, kPrefix)) {
    return absl::UnauthenticatedError("Authorization must be \"Bearer <token>\"");
  }
  std::optional<std::string> identity = auth.IdentityOf(value->substr(kPrefix.size()));
  if (!identity) return absl::UnauthenticatedError("invalid API key");
  return *identity;
}

absl::StatusOr<json> ParseBody(const HttpRequest& request) {
  absl::StatusOr<json> body = ParseJsonStrict(request.body, "body");
  if (!body.ok()) return ParamError("", absl::StrCat("invalid JSON: ", body.status().message()));
  if (!body->is_object()) return ParamError("", "the body must be a JSON object");
  return body;
}

// /tokenize and /detokenize: the model must have a tokenizer, the body must be a JSON object.
absl::StatusOr<json> TokenizerBody(const HttpRequest& request, const ServingContext& serving) {
  if (serving.tokenizer == nullptr) {
    return absl::FailedPreconditionError("this model has no tokenizer");
  }
  return ParseBody(request);
}

}  // namespace

OpenAiService::OpenAiService(const BearerAuth* auth, const GenerationService& grpc,
                             ServerMetrics* metrics, OpenAiServiceOptions options)
    : auth_(auth),
      grpc_(grpc),
      metrics_(metrics),
      options_(options),
      created_unix_s_(std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count()) {}

void OpenAiService::Handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
  const std::string path = request.path();
  const ServingContext* serving = grpc_.serving();
  if (path == "/health") {
    if (grpc_.draining()) return RespondJson(*exchange, 503, {{"status", "draining"}});
    if (serving == nullptr) return RespondJson(*exchange, 503, {{"status", "loading"}});
    return RespondJson(*exchange, 200, {{"status", "ok"}});
  }
  if (path == "/metrics") {
    if (metrics_ == nullptr) {
      return RespondError(*exchange, absl::NotFoundError("metrics are off (--metrics-port -1)"));
    }
    return exchange->Respond(200, "text/plain; version=0.0.4", metrics_->Render());
  }
  const bool post = request.method == "POST";
  const struct {
    const char* path;
    bool post;
  } routes[] = {{"/v1/completions", true}, {"/v1/chat/completions", true},
                {"/v1/models", false},     {"/tokenize", true},
                {"/detokenize", true},     {"/reset_prefix_cache", true}};
  const auto route = std::find_if(std::begin(routes), std::end(routes),
                                  [&](const auto& r) { return path == r.path; });
  if (route == std::end(routes)) {
    return RespondError(*exchange, absl::NotFoundError(absl::StrCat("no route ", path)));
  }
  if (route->post != post) {
    return RespondJson(
        *exchange, 405,
        ErrorJson(405, absl::StrCat(path, " takes ", route->post ? "POST" : "GET"), ""));
  }
  std::string identity;
  if (auth_ != nullptr) {
    absl::StatusOr<std::string> checked = Authenticate(*auth_, request);
    if (!checked.ok()) return RespondError(*exchange, checked.status());
    identity = *std::move(checked);
  }
  if (grpc_.draining()) {
    return RespondError(*exchange, absl::UnavailableError("the server is draining"));
  }
  if (serving == nullptr)
    return RespondError(*exchange, absl::UnavailableError("the model is loading"));
  if (path == "/v1/models") return Models(*serving, *exchange);
  if (path == "/tokenize") return Tokenize(request, *serving, *exchange);
  if (path == "/detokenize") return Detokenize(request, *serving, *exchange);
  if (path == "/reset_prefix_cache") {
    // vLLM's admin call; answered from the engine thread within one loop turn.
    return serving->engine->ResetPrefixCache([exchange](absl::Status status) {
      if (status.ok()) return RespondJson(*exchange, 200, {{"status", "ok"}});
      RespondError(*exchange, status);
    });
  }
  Generate(request, path == "/v1/chat/completions", *serving, identity, std::move(exchange));
}

void OpenAiService::Models(const ServingContext& serving, HttpExchange& exchange) {
  json model = {{"id", serving.model_name},
                {"object", "model"},
                {"created", created_unix_s_},
                {"owned_by", "iquest-serve"},
                {"root", serving.model_name},
                {"parent", nullptr},
                {"max_model_len", serving.max_model_len}};
  RespondJson(exchange, 200, {{"object", "list"}, {"data", json::array({model})}});
}

void OpenAiService::Tokenize(const HttpRequest& request, const ServingContext& serving,
                             HttpExchange& exchange) {
  absl::StatusOr<json> body = TokenizerBody(request, serving);
  if (!body.ok()) return RespondError(exchange, body.status());
  const auto prompt = body->find("prompt");
  if (prompt == body->end() || !prompt->is_string()) {
    return RespondError(exchange, ParamError("prompt", "'prompt' must be a string"));
  }
  if (static_cast<int64_t>(prompt->get_ref<const std::string&>().size()) >
      serving.max_prompt_bytes) {
    return RespondError(
        exchange, ParamError("prompt", absl::StrCat("'prompt' exceeds ", serving.max_prompt_bytes,
                                                    " bytes")));
  }
  EncodeOptions options;
  const auto add = body->find("add_special_tokens");
  if (add != body->end() && !add->is_null()) {
    if (!add->is_boolean()) {
      return RespondError(
          exchange, ParamError("add_special_tokens", "'add_special_tokens' must be a boolean"));
    }
    options.add_special_tokens = add->get<bool>();
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      serving.tokenizer->Encode(prompt->get_ref<const std::string&>(), options);
  if (!ids.ok()) return RespondError(exchange, ids.status());
  RespondJson(exchange, 200,
              {{"tokens", *ids}, {"count", ids->size()}, {"max_model_len", serving.max_model_len}});
}

void OpenAiService::Detokenize(const HttpRequest& request, const ServingContext& serving,
                               HttpExchange& exchange) {
  absl::StatusOr<json> body = TokenizerBody(request, serving);
  if (!body.ok()) return RespondError(exchange, body.status());
  const auto tokens = body->find("tokens");
  google::protobuf::RepeatedField<int32_t> ids;
  const auto bad = ParamError("tokens", "'tokens' must be a list of token ids");
  if (tokens == body->end() || !tokens->is_array()) return RespondError(exchange, bad);
  for (const json& id : *tokens) {
    if (!id.is_number_integer()) return RespondError(exchange, bad);
    const int64_t v = id.get<int64_t>();
    ids.Add(static_cast<int32_t>(std::clamp<int64_t>(v, -1, std::numeric_limits<int32_t>::max())));
  }
  if (absl::Status ok = CheckTokenIds(ids, serving, "tokens"); !ok.ok()) {
    return RespondError(exchange, ok);
  }
  RespondJson(exchange, 200,
              {{"prompt", serving.tokenizer->Decode(std::vector<int32_t>(ids.begin(), ids.end()),
                                                    /*skip_special_tokens=*/true)}});
}

void OpenAiService::Generate(const HttpRequest& request, bool chat, const ServingContext& serving,
                             const std::string& token_identity,
                             std::shared_ptr<HttpExchange> exchange) {
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(
      chat ? OpenAiEndpoint::kChatCompletions : OpenAiEndpoint::kCompletions, request.body);
  if (!parsed.ok()) return RespondError(*exchange, parsed.status());
  if (!parsed->model.empty() && parsed->model != serving.model_name) {
    return RespondJson(
        *exchange, 404,
        ErrorJson(404,
                  absl::StrCat("the model '", parsed->model,
                               "' does not exist; this server serves '", serving.model_name, "'"),
                  "model", "model_not_found"));
  }
  constexpr size_t kMaxPrompts = 64;
  if (parsed->prompts.size() > kMaxPrompts) {
    return RespondError(*exchange,
                        ParamError("prompt", absl::StrCat("at most ", kMaxPrompts, " prompts")));
  }
  std::string id;
  if (const std::string* header = request.header("x-request-id")) {
    id = *header;
  } else {
    id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", next_request_number_.fetch_add(1), "-",
                      std::random_device()());
  }
  std::optional<Clock::time_point> deadline;
  double timeout_s = static_cast<double>(options_.request_timeout_s);
  if (const std::string* header = request.header("x-request-timeout")) {
    double header_s = 0;
    if (!absl::SimpleAtod(*header, &header_s) || !(header_s > 0 && header_s <= 86400)) {
      return RespondError(*exchange, ParamError("x-request-timeout",
                                                "the x-request-timeout header must be seconds "
                                                "in (0, 86400]"));
    }
    timeout_s = timeout_s > 0 ? std::min(timeout_s, header_s) : header_s;
  }
  if (timeout_s > 0) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(timeout_s));
  }
  std::string tenant;
  if (const std::string* header = request.header("x-tenant")) tenant = *header;

  auto generation =
      std::make_shared<HttpGeneration>(exchange, serving, *parsed, id, created_unix_s_);
  generation->metrics = metrics_;
  generation->request_log_json = serving.request_log_json;
  std::vector<GenerationRequest> requests;
  for (size_t k = 0; k < parsed->prompts.size(); ++k) {
    serve::v1::GenerateRequest& proto = parsed->prompts[k];
    proto.set_request_id(parsed->prompts.size() == 1 ? id : absl::StrCat(id, "-", k));
    proto.set_tenant(tenant);
    absl::StatusOr<GenerationRequest> r = ToGenerationRequest(proto, serving);
    if (!r.ok()) return RespondError(*exchange, r.status());
    if (chat && !parsed->max_tokens_set) {
      // OpenAI's chat default: as many tokens as the context leaves (at least one, so a prompt
      // that fills the context still gets CheckFits's error naming the limit).
      const int64_t room = serving.max_model_len - static_cast<int64_t>(r->prompt_token_ids.size());
      r->sampling.max_tokens =
          static_cast<int32_t>(std::max<int64_t>(1, std::min(serving.max_tokens_cap, room)));
    }
    r->owner = RequestOwner(token_identity, r->tenant);
    r->deadline = deadline;
    if (parsed->echo) {
      generation->SetEcho(
          k, proto.has_text()
                 ? proto.text()
                 : (serving.tokenizer ? serving.tokenizer->Decode(r->prompt_token_ids, true) : ""));
    }
    HttpGeneration::PromptState state;
    state.request_id = r->request_id;
    state.owner = r->owner;
    state.tenant = r->tenant;
    state.priority = r->priority;
    generation->prompts.push_back(state);
    requests.push_back(*std::move(r));
  }
  for (size_t k = 0; k < requests.size(); ++k) {
    const absl::Status submitted = serving.engine->Submit(
        std::move(requests[k]), std::make_shared<HttpSink>(exchange, generation, k));
    if (!submitted.ok()) {
      generation->CancelAll(*serving.engine);  // The prompts before this one.
      HttpHeaders headers;
      if (submitted.code() == absl::StatusCode::kResourceExhausted) {
        thread_local std::mt19937_64 rng(std::random_device{}());
        const EngineStats stats = serving.engine->Stats();
        const int64_t hint_ms = RetryAfterMs(stats.num_waiting, stats.finished_per_second,
                                             std::uniform_real_distribution<double>(0.0, 1.0)(rng));
        headers = {{"Retry-After", absl::StrCat((hint_ms + 999) / 1000)},
                   {"retry-after-ms", absl::StrCat(hint_ms)}};
      }
      if (metrics_ != nullptr) {
        metrics_->ObserveRejected(static_cast<int>(submitted.code()), Api::kHttp);
      }
      return RespondError(*exchange, submitted, std::move(headers));
    }
    generation->prompts[k].submitted = true;
  }
  // Runs on the strand, as every HttpGeneration method does.
  Engine* engine = serving.engine.get();
  exchange->OnClientGone([generation, engine] { generation->CancelAll(*engine); });
}

}  // namespace iquest
