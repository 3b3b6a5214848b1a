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
#include "server/http/http_generation.h"
#include "server/http/openai_request.h"
#include "server/request_log.h"
#include "server/request_validation.h"

namespace iquest {
namespace {

using json = nlohmann::json;

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
    absl::StatusOr<GenerationRequest> r =
        ToGenerationRequest(proto, serving, chat ? &generation->tools : nullptr);
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
