// The HTTP API's response side: OpenAI error bodies and status mapping, and HttpGeneration,
// the state of one /v1/completions or /v1/chat/completions request on its connection's strand
// (choices, SSE chunks, the final body), fed by HttpSink from the engine thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/openai_request.h"
#include "server/metrics.h"
#include "server/request_log.h"
#include "server/serving_context.h"
#include "server/tools/tool_calling.h"

namespace iquest {

// JSON text; invalid UTF-8 (a byte-fallback token's piece) is replaced, never thrown on.
std::string Dump(const nlohmann::json& j);
int HttpStatusOf(absl::StatusCode code);
nlohmann::json ErrorJson(int http_status, absl::string_view message, const std::string& param,
                         const char* code = nullptr);
void RespondJson(HttpExchange& exchange, int status, const nlohmann::json& body,
                 HttpHeaders headers = {});
void RespondError(HttpExchange& exchange, const absl::Status& status, HttpHeaders headers = {});
const char* FinishReasonText(FinishReason reason);
// Why a finished request is an error rather than a completion, or OK.
absl::Status FinishStatus(FinishReason reason);

// One HTTP generation: up to several prompts, each with n samples. Lives on the connection's
// strand (every method runs there), shared by the engine sinks' posted tasks.
class HttpGeneration : public std::enable_shared_from_this<HttpGeneration> {
 public:
  using json = nlohmann::json;

  struct Choice {
    std::string text;
    json logprobs_content = json::array();  // Chat: the `content` list; completions: below.
    json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
         text_offset = json::array();
    size_t offset = 0;
    const char* finish_reason = nullptr;
    bool role_sent = false;
    json tool_calls = json::array();  // Chat with tools: the calls parsed from the output.
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
  ToolCalling tools;  // Chat: what tool_choice asked (kNone: the text as it is).

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
    json calls = json::array();
    if (chat_ && tools.choice != ToolChoice::kNone) ExtractToolCalls(index, output, calls);
    if (output.finished) {
      c.finish_reason = FinishReasonText(output.finish_reason);
      // OpenAI: a turn that ended in calls finishes with "tool_calls".
      if (!c.tool_calls.empty() && std::string_view(c.finish_reason) == "stop") {
        c.finish_reason = "tool_calls";
      }
    }
    const absl::Status finish =
        output.finished ? FinishStatus(output.finish_reason) : absl::OkStatus();
    if (!finish.ok() && error_.ok()) error_ = finish;
    if (stream_) {
      if (!output.text.empty() || (output.finished && finish.ok()) || !logprobs.is_null() ||
          !calls.empty()) {
        SendChunk(index, output.text, logprobs, finish.ok() ? c.finish_reason : nullptr, calls);
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

  // Moves the calls in `output`'s text out of it: into `calls` (this delta's, as OpenAI's
  // streamed delta.tool_calls) and the choice's list.
  void ExtractToolCalls(size_t index, GenerationOutput& output, json& calls) {
    auto [it, added] =
        extractors_.try_emplace(index, tools, absl::StrCat("call_", id_, "_", index, "_"));
    ToolCallDelta delta = it->second.Push(output.text, output.finished);
    output.text = std::move(delta.content);
    Choice& c = choices_[index];
    for (const ToolCall& call : delta.calls) {
      const serve::v1::ToolCall proto = it->second.ToProto(call);
      json entry = {
          {"id", proto.id()},
          {"type", "function"},
          {"function",
           {{"name", proto.function().name()}, {"arguments", proto.function().arguments()}}}};
      json streamed = entry;
      streamed["index"] = c.tool_calls.size();
      calls.push_back(std::move(streamed));
      c.tool_calls.push_back(std::move(entry));
    }
  }

  void SendChunk(size_t index, const std::string& text, const json& logprobs,
                 const char* finish_reason, const json& tool_calls = json::array()) {
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
      if (!text.empty() || (finish_reason == nullptr && tool_calls.empty())) {
        delta["content"] = text;
      }
      if (!tool_calls.empty()) delta["tool_calls"] = tool_calls;
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
        if (!c.tool_calls.empty()) {
          if (c.text.empty()) choice["message"]["content"] = nullptr;
          choice["message"]["tool_calls"] = c.tool_calls;
        }
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
  std::map<size_t, ToolCallExtractor> extractors_;  // Per choice, when tools are parsed.
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

}  // namespace iquest
