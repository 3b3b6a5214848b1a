// OpenAiService: the OpenAI-compatible HTTP API over the same engine as gRPC.
//
//   POST /v1/completions, /v1/chat/completions  (stream: SSE chunks, then `data: [DONE]`)
//   GET  /v1/models, /health (200; 503 while loading or draining), /metrics (the Prometheus text)
//   POST /tokenize, /detokenize                 (vLLM's shapes)
//   POST /reset_prefix_cache                    (vLLM's; 400 while any KV block is in use)
//
// A request is parsed (openai_request.h), validated by the gRPC path's ToGenerationRequest, and
// submitted; engine outputs are posted to the connection's strand and formatted there, never on
// the engine thread. A client that disconnects cancels its request (blocks free within a step).
// Errors are OpenAI's {"error": {message, type, param, code}} with 400 / 401 / 404 / 413 / 429
// (Retry-After) / 503 / 504.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/auth.h"
#include "server/generation_service.h"
#include "server/http/http_server.h"
#include "server/metrics.h"

namespace iquest {

struct OpenAiServiceOptions {
  int64_t request_timeout_s = 0;  // 0: none; the `x-request-timeout` header (seconds) may be less.
};

class OpenAiService {
 public:
  // `grpc` tells readiness and drain, and holds the serving context once loaded.
  OpenAiService(const BearerAuth* auth, const GenerationService& grpc, ServerMetrics* metrics,
                OpenAiServiceOptions options);

  void Handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange);

 private:
  void Generate(const HttpRequest& request, bool chat, const ServingContext& serving,
                const std::string& token_identity, std::shared_ptr<HttpExchange> exchange);
  void Tokenize(const HttpRequest& request, const ServingContext& serving, HttpExchange& exchange);
  void Detokenize(const HttpRequest& request, const ServingContext& serving,
                  HttpExchange& exchange);
  void Models(const ServingContext& serving, HttpExchange& exchange);

  const BearerAuth* auth_;
  const GenerationService& grpc_;
  ServerMetrics* metrics_;
  OpenAiServiceOptions options_;
  const int64_t created_unix_s_;
  std::atomic<uint64_t> next_request_number_{0};
};

}  // namespace iquest
