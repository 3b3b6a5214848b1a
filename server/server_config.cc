#include "server/server_config.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/mapped_file.h"
#include "engine/speculation/speculator.h"
#include "kernels/backend_flags.h"

namespace iquest {

void ServerConfig::RegisterFlags(FlagParser& p) {
  p.AddString("model", &model_dir,
              "HF checkpoint folder (config.json, safetensors, tokenizer), or a .gguf file (the "
              "tokenizer is read from its folder)");
  p.AddString("device", &device, "cpu or cuda");
  RegisterBackendFlags(p, &backend);
  p.AddString("chat-template", &chat_template,
              "override the model's own chat template: a Jinja FILE, or a fallback: chatml, "
              "llama3, llama2");
  p.AddBool("allow-manifest-mismatch", &allow_manifest_mismatch,
            "serve a model whose files differ from its manifest.json (logs a warning)");
  p.AddString("host", &host, "address to listen on");
  p.AddInt("port", &port, "gRPC port; 0 picks a free one", 0, 65535);
  p.AddInt("health-port", &health_port, "plaintext grpc.health.v1 port; -1 none, 0 picks one", -1,
           65535);
  p.AddInt("metrics-port", &metrics_port, "Prometheus /metrics port; -1 off, 0 picks one", -1,
           65535);
  p.AddInt("http-port", &http_port,
           "OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, ...); -1 off, 0 "
           "picks one",
           -1, 65535);
  p.AddInt("http-threads", &http_threads, "I/O threads serving all HTTP connections", 1, 64);
  p.AddInt("http-request-timeout-s", &http_request_timeout_s,
           "deadline of an HTTP generation request; 0: none", 0, 86400);
  p.AddInt("http-idle-timeout-s", &http_idle_timeout_s,
           "close an HTTP connection idle (or sending one request) this long", 1, 3600);
  p.AddInt("http-write-timeout-s", &http_write_timeout_s,
           "drop an HTTP client that takes longer to take one write", 1, 3600);
  p.AddInt("http-max-connections", &http_max_connections, "open HTTP connections at most", 1,
           1 << 20);
  p.AddString("kv-events-endpoint", &kv_events_endpoint,
              "publish KV-cache block events (vLLM's ZMQ/msgpack format, for llm-d / Dynamo) to "
              "this ZeroMQ endpoint: tcp://*:5557 binds, tcp://host:5557 connects; empty: off");
  p.AddString("kv-events-topic", &kv_events_topic, "topic frame of every KV-events message");
  p.AddInt("block-size", &block_size, "KV cache block size in tokens", 1, 1024);
  p.AddInt("num-kv-blocks", &num_kv_blocks, "KV cache blocks; 0 sizes from --kv-cache-mb", 0,
           1 << 24);
  p.AddInt("kv-cache-mb", &kv_cache_mb, "KV cache memory when --num-kv-blocks is 0", 1, 1 << 22);
  p.AddInt("max-num-seqs", &max_num_seqs, "requests in one step", 1, 65536);
  p.AddInt("min-steps-before-priority-preemption", &min_steps_before_priority_preemption,
           "steps a request runs before a more important arrival may preempt it", 0, 1 << 20);
  p.AddString("tenant-weights", &tenant_weights_file,
              "file of `TENANT WEIGHT` lines: shares of each step's tokens and seats under "
              "contention; tenants not named weigh 1");
  p.AddInt("long-prefill-token-threshold", &long_prefill_token_threshold,
           "most prompt tokens of one request per step; 0: no cap", 0, 1 << 20);
  p.AddInt("max-num-batched-tokens", &max_num_batched_tokens, "token budget of one step", 1,
           1 << 20);
  p.AddInt("max-queue", &max_queue, "waiting requests before RESOURCE_EXHAUSTED", 0, 1 << 20);
  p.AddInt("max-model-len", &max_model_len, "prompt + output tokens; 0: the model's context", 0,
           1 << 24);
  p.AddInt("max-tokens-cap", &max_tokens_cap, "largest max_tokens accepted; 0: max-model-len", 0,
           1 << 24);
  p.AddBool("enable-prefix-caching", &enable_prefix_caching, "reuse KV blocks of shared prefixes");
  p.AddString("speculative", &speculative,
              "speculative decoding: none, ngram (prompt lookup) or draft (--draft-model)");
  p.AddInt("num-speculative-tokens", &num_speculative_tokens,
           "most drafts a request verifies per step (fewer when they do not pay)", 1,
           SpeculationConfig::kMaxSpeculativeTokens);
  p.AddInt("ngram-min", &ngram_min, "prompt lookup: shortest suffix matched", 1,
           SpeculationConfig::kMaxNgram);
  p.AddInt("ngram-max", &ngram_max, "prompt lookup: longest suffix matched", 1,
           SpeculationConfig::kMaxNgram);
  p.AddBool("speculative-adaptive", &speculative_adaptive,
            "fit each request's drafts to its acceptance and the batch's load; off: always "
            "--num-speculative-tokens");
  p.AddString("draft-model", &draft_model_dir,
              "--speculative draft: the draft model's folder (same tokenizer as --model)");
  p.AddInt("draft-kv-cache-mb", &draft_kv_cache_mb, "the draft model's KV cache memory", 1,
           1 << 22);
  p.AddInt("max-prompt-bytes", &max_prompt_bytes, "largest text prompt", 1, 1 << 30);
  p.AddInt("grammar-compile-timeout-ms", &grammar_compile_timeout_ms,
           "longest compile of one structured-output constraint (the request fails past it)", 1,
           600000);
  p.AddString("tool-call-parser", &tool_call_parser,
              "how the model writes tool calls: hermes (<tool_call>{json}</tool_call>), "
              "llama3_json, or auto (from the vocabulary)");
  p.AddInt("grammar-cache-size", &grammar_cache_size, "compiled structured-output constraints kept",
           1, 1 << 16);
  p.AddInt("max-message-bytes", &max_message_bytes, "largest gRPC message received or sent", 1024,
           1 << 30);
  p.AddInt("max-concurrent-streams", &max_concurrent_streams, "streams per connection", 1, 1 << 20);
  p.AddInt("keepalive-time-s", &keepalive_time_s, "server keepalive ping interval", 1, 86400);
  p.AddInt("keepalive-timeout-s", &keepalive_timeout_s, "keepalive ping ack timeout", 1, 3600);
  p.AddInt("handshake-timeout-s", &handshake_timeout_s,
           "close connections that have not finished the TLS/HTTP2 handshake by then", 1, 3600);
  p.AddInt("min-ping-interval-s", &min_ping_interval_s, "shortest client ping interval allowed", 1,
           3600);
  p.AddString("tls-cert", &tls_cert, "server certificate (PEM); with --tls-key enables TLS");
  p.AddString("tls-key", &tls_key, "server private key (PEM)");
  p.AddString("tls-client-ca", &tls_client_ca, "CA (PEM) that client certificates must chain to");
  p.AddString("auth-token-file", &auth_token_file, "bearer tokens, one per line; empty: no auth");
  p.AddInt("drain-timeout-s", &drain_timeout_s, "on SIGTERM, how long in-flight calls may run", 0,
           3600);
  p.AddInt("testing-load-delay-ms", &testing_load_delay_ms,
           "tests only: keep readiness off this much longer while loading", 0, 600000);
  p.AddString("log-level", &log_level, "debug, info, warning or error");
  p.AddString("request-log-format", &request_log_format,
              "the per-request log line: kv (key=value) or json");
}

namespace {

absl::Status ReadableFile(const std::string& flag, const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": no such file: ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ServerConfig::Validate() const {
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (tool_call_parser != "auto" && tool_call_parser != "hermes" &&
      tool_call_parser != "llama3_json") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tool-call-parser must be auto, hermes or llama3_json, got ", tool_call_parser));
  }
  struct stat info {};
  if (::stat(model_dir.c_str(), &info) != 0 ||
      !(S_ISDIR(info.st_mode) || (S_ISREG(info.st_mode) && model_dir.ends_with(".gguf")))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model: not a folder or a .gguf file: ", model_dir));
  }
  if (const absl::StatusOr<SpeculationMethod> method = ParseSpeculationMethod(speculative);
      !method.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--speculative: ", method.status().message()));
  } else if ((*method == SpeculationMethod::kDraft) != !draft_model_dir.empty()) {
    return absl::InvalidArgumentError("--speculative draft and --draft-model go together");
  }
  if (ngram_min > ngram_max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ngram-min (", ngram_min, ") must not exceed --ngram-max (", ngram_max, ")"));
  }
  if (device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--device must be cpu or cuda, got ", device));
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!tls_client_ca.empty() && tls_cert.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  for (const auto& [flag, path] : {std::pair<std::string, std::string>{"tls-cert", tls_cert},
                                   {"tls-key", tls_key},
                                   {"tls-client-ca", tls_client_ca},
                                   {"auth-token-file", auth_token_file},
                                   {"tenant-weights", tenant_weights_file}}) {
    if (!path.empty()) {
      const absl::Status status = ReadableFile(flag, path);
      if (!status.ok()) return status;
    }
  }
  if (absl::StatusOr<TenantWeights> weights = LoadTenantWeights(tenant_weights_file);
      !weights.ok()) {
    return weights.status();  // Before the model loads: a typo fails in a second, not minutes.
  }
  if (health_port > 0 && health_port == port) {
    return absl::InvalidArgumentError("--health-port must differ from --port");
  }
  if (metrics_port > 0 && (metrics_port == port || metrics_port == health_port)) {
    return absl::InvalidArgumentError("--metrics-port must differ from --port and --health-port");
  }
  if (http_port > 0 &&
      (http_port == port || http_port == health_port || http_port == metrics_port)) {
    return absl::InvalidArgumentError(
        "--http-port must differ from --port, --health-port and --metrics-port");
  }
  if (log_level != "debug" && log_level != "info" && log_level != "warning" &&
      log_level != "error") {
    return absl::InvalidArgumentError("--log-level must be debug, info, warning or error");
  }
  if (request_log_format != "kv" && request_log_format != "json") {
    return absl::InvalidArgumentError("--request-log-format must be kv or json");
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantWeights> LoadTenantWeights(const std::string& path) {
  if (path.empty()) return TenantWeights();
  absl::StatusOr<std::string> text = ReadFileToString(path);
  absl::StatusOr<TenantWeights> weights =
      text.ok() ? ParseTenantWeights(*text) : absl::StatusOr<TenantWeights>(text.status());
  if (!weights.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tenant-weights ", path, ": ", weights.status().message()));
  }
  return weights;
}

std::string ServerConfig::Describe() const {
  return absl::StrCat(
      Kv("device", device), Kv("threads", backend.num_threads),
      Kv("cpu_kernels", backend.cpu_kernels), Kv("block_size", block_size),
      Kv("max_num_seqs", max_num_seqs), Kv("max_num_batched_tokens", max_num_batched_tokens),
      Kv("long_prefill_token_threshold", long_prefill_token_threshold),
      Kv("min_steps_before_priority_preemption", min_steps_before_priority_preemption),
      Kv("tenant_weights", tenant_weights_file.empty() ? "none" : tenant_weights_file),
      Kv("max_queue", max_queue), Kv("max_prompt_bytes", max_prompt_bytes),
      Kv("grammar_compile_timeout_ms", grammar_compile_timeout_ms),
      Kv("max_message_bytes", max_message_bytes),
      Kv("max_concurrent_streams", max_concurrent_streams),
      Kv("keepalive_time_s", keepalive_time_s), Kv("keepalive_timeout_s", keepalive_timeout_s),
      Kv("min_ping_interval_s", min_ping_interval_s),
      Kv("handshake_timeout_s", handshake_timeout_s), Kv("http_threads", http_threads),
      Kv("http_request_timeout_s", http_request_timeout_s),
      Kv("http_idle_timeout_s", http_idle_timeout_s),
      Kv("http_write_timeout_s", http_write_timeout_s),
      Kv("http_max_connections", http_max_connections),
      Kv("kv_events", kv_events_endpoint.empty() ? "off" : kv_events_endpoint),
      Kv("tls", tls_cert.empty() ? "off" : (tls_client_ca.empty() ? "on" : "mtls")),
      Kv("auth", auth_token_file.empty() ? "off" : "bearer"), Kv("speculative", speculative),
      Kv("num_speculative_tokens", num_speculative_tokens), Kv("drain_timeout_s", drain_timeout_s));
}

}  // namespace iquest
