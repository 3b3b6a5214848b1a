// ServerConfig: every setting of iquest-serve, filled from flags in main.cc only, validated once
// at start-up, and printed (limits included) in one log line.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flags.h"
#include "kernels/backend.h"
#include "scheduler/fair_share.h"

namespace iquest {

struct ServerConfig {
  // Model.
  std::string model_dir;
  std::string device = "cpu";  // cpu | cuda
  BackendOptions backend;      // --threads, --cpu-kernels
  std::string chat_template;   // Override: a Jinja file's path, or chatml | llama3 | llama2.
  // Serve a folder whose files differ from its manifest.json (logged as a warning).
  bool allow_manifest_mismatch = false;
  // Network.
  std::string host = "127.0.0.1";
  int64_t port = 50051;         // 0: pick a free port (printed at start-up).
  int64_t health_port = -1;     // -1: health on the main port only; 0: pick; else that port.
  int64_t metrics_port = 9400;  // Prometheus /metrics; -1: off; 0: pick.
  // The OpenAI-compatible HTTP API (server/http): -1 off; 0 picks a free port.
  int64_t http_port = 8000;
  int64_t http_threads = 2;            // Asio I/O threads serving every HTTP connection.
  int64_t http_request_timeout_s = 0;  // 0: none (the x-request-timeout header may set one).
  int64_t http_idle_timeout_s = 60;    // Between requests, and to read one whole request.
  int64_t http_write_timeout_s = 30;   // One write to a (slow) client.
  int64_t http_max_connections = 4096;
  // KV-cache events for prefix-aware routers (server/kv_events_publisher.h); empty: off.
  std::string kv_events_endpoint;
  std::string kv_events_topic;
  // KV cache and scheduling.
  int64_t block_size = 16;
  int64_t num_kv_blocks = 0;  // 0: from kv_cache_mb.
  int64_t kv_cache_mb = 256;
  int64_t max_num_seqs = 64;
  int64_t max_num_batched_tokens = 2048;
  int64_t long_prefill_token_threshold = 0;  // 0: a prefill chunk is bounded by the budget only.
  int64_t min_steps_before_priority_preemption = 8;
  std::string tenant_weights_file;  // `TENANT WEIGHT` lines (fair_share.h); empty: all weigh 1.
  int64_t max_queue = 256;          // Waiting requests; beyond: RESOURCE_EXHAUSTED.
  int64_t max_model_len = 0;        // 0: the model's context.
  int64_t max_tokens_cap = 0;       // 0: max_model_len.
  bool enable_prefix_caching = true;
  // Speculative decoding (engine/speculation/).
  std::string speculative = "none";  // none | ngram | draft
  int64_t num_speculative_tokens = 4;
  int64_t ngram_min = 2;
  int64_t ngram_max = 4;
  bool speculative_adaptive = true;
  std::string draft_model_dir;     // --speculative draft: same tokenizer as --model.
  int64_t draft_kv_cache_mb = 64;  // The draft model's own KV pool.
  // Limits.
  int64_t max_prompt_bytes = 4 << 20;
  int64_t grammar_compile_timeout_ms = 10000;  // One structured-output constraint's compile.
  int64_t grammar_cache_size = 64;             // Compiled constraints kept (LRU).
  std::string tool_call_parser = "auto";       // auto | hermes | llama3_json
  int64_t max_message_bytes = 8 << 20;
  int64_t max_concurrent_streams = 256;  // Per connection.
  int64_t keepalive_time_s = 60;
  int64_t keepalive_timeout_s = 20;
  int64_t min_ping_interval_s = 10;  // Clients pinging more often get GOAWAY.
  // A connection must finish its TLS and HTTP/2 handshake (through the client's SETTINGS) by then
  // or is closed; gRPC's own default holds it 120 s.
  int64_t handshake_timeout_s = 10;
  // Security.
  std::string tls_cert;  // PEM; with tls_key enables TLS.
  std::string tls_key;
  std::string tls_client_ca;    // PEM; requires and verifies client certificates (mTLS).
  std::string auth_token_file;  // One bearer token per line; empty: no auth.
  // Lifecycle.
  int64_t drain_timeout_s = 30;
  int64_t testing_load_delay_ms = 0;  // Tests only: hold readiness off this long while loading.
  std::string log_level = "info";
  std::string request_log_format = "kv";  // kv | json

  void RegisterFlags(FlagParser& parser);
  absl::Status Validate() const;
  std::string Describe() const;  // key=value, for the start-up log line.
};

// Reads and parses a --tenant-weights file; an empty path is no weights. Errors name the flag.
absl::StatusOr<TenantWeights> LoadTenantWeights(const std::string& path);

}  // namespace iquest
