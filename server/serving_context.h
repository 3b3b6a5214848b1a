// ServingContext: what the RPC handlers need once the model is loaded. Built once by main.cc,
// immutable afterwards (the engine is internally synchronised).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/engine.h"
#include "kernels/backend.h"
#include "model/llama.h"
#include "model/tokenizer/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "server/kv_events_publisher.h"
#include "server/metrics.h"
#include "server/stream_pump.h"
#include "server/tools/tool_call_parser.h"
#include "structured/constraint.h"

namespace iquest {

struct ServingContext {
  std::string model_name;
  std::string model_fingerprint;  // manifest.json's; empty when the folder has none.
  std::string device;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<LlamaModel> draft_model;    // --speculative draft; outlives the engine.
  std::string draft_model_name;               // Its folder's name; empty without one.
  std::unique_ptr<Tokenizer> tokenizer;       // Null when the model folder has none.
  std::optional<ChatTemplate> chat_template;  // Unset when none was recognised...
  absl::Status chat_template_error;           // ...and this says why.
  // Compiled structured-output constraints over the tokenizer's vocabulary; null without one.
  std::unique_ptr<GrammarCache> grammars;
  // How the model writes tool calls (--tool-call-parser, or guessed from its vocabulary).
  ToolCallFormat tool_call_format = ToolCallFormat::kHermes;
  // Before the engine: the engine's last outputs (at its destruction) still reach the pump.
  std::unique_ptr<StreamPump> stream_pump;
  std::unique_ptr<KvEventsPublisher> kv_events;  // Null without --kv-events-endpoint.
  std::unique_ptr<Engine> engine;
  int64_t max_model_len = 0;
  int64_t max_tokens_cap = 0;
  int64_t max_prompt_bytes = 0;
  int64_t max_num_seqs = 0;
  ServerMetrics* metrics = nullptr;  // Null when --metrics-port is -1.
  bool request_log_json = false;     // --request-log-format json.
};

}  // namespace iquest
