// ServerMetrics: the Prometheus metrics of DESIGN.md §9, served by prometheus-cpp on their own
// port. Engine state (running, waiting, KV blocks, prefix cache, preemptions) is read from
// Engine::Stats() at scrape time, so gauges are exact when scraped and no thread polls the
// engine. Per-request figures are recorded as requests finish; every family has a `model` label.
// Tenant and priority are left out of labels on purpose: both are client-chosen and would make
// series cardinality unbounded.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "structured/constraint.h"

namespace iquest {

// Which front door a request came through: the `api` label of request counts and latencies.
enum class Api { kGrpc, kHttp };

class ServerMetrics {
 public:
  // Listens on `bind_address` ("host:port", port 0 picks one).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Start(const std::string& bind_address,
                                                              const std::string& model_name);
  ~ServerMetrics();

  int port() const { return port_; }
  // The exposition text a scrape of the metrics port returns (the HTTP port's /metrics alias).
  std::string Render() const;
  // Engine gauges appear once the engine exists.
  void SetEngine(const Engine* engine) { engine_.store(engine); }
  // Structured-output compile counters appear once the grammar cache exists (with a tokenizer).
  void SetGrammarCache(const GrammarCache* grammars) { grammars_.store(grammars); }
  // iquest_model_info{model, architecture, fingerprint} 1, once the model is loaded and checked
  // against its manifest (fingerprint "" when it has none).
  void SetModelInfo(const std::string& architecture, const std::string& fingerprint);

  void ObserveRequestDone(const GenerationOutput& last, Api api = Api::kGrpc);
  void ObserveRejected(int grpc_code, Api api = Api::kGrpc);
  void ObserveTokens(int64_t num_tokens);
  void ObserveInterTokenLatency(double seconds);
  void ObserveStep(double seconds, int64_t num_batch_tokens);

 private:
  class EngineCollector;
  ServerMetrics(std::string model_name);

  std::string model_name_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<EngineCollector> engine_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::atomic<const Engine*> engine_{nullptr};
  std::atomic<const GrammarCache*> grammars_{nullptr};
  int port_ = 0;

  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Family<prometheus::Gauge>* model_info_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Histogram* ttft_[2];  // By Api.
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_[2];
  prometheus::Histogram* queue_;
  prometheus::Histogram* request_prompt_tokens_;
  prometheus::Histogram* request_generation_tokens_;
  prometheus::Histogram* step_duration_;
  prometheus::Histogram* batch_tokens_;
};

}  // namespace iquest
