#include "server/metrics.h"

#include <malloc.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/build_version.h"
#include "prometheus/collectable.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"

namespace iquest {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Bucket bounds chosen for each measure's range.
const prometheus::Histogram::BucketBoundaries kTtftSeconds = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60};
const prometheus::Histogram::BucketBoundaries kItlSeconds = {
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const prometheus::Histogram::BucketBoundaries kE2eSeconds = {
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600};
const prometheus::Histogram::BucketBoundaries kQueueSeconds = {
    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const prometheus::Histogram::BucketBoundaries kTokens = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
// Fine below 100 ms, where decode steps live: iquest-bench reads p50/p99 out of these buckets.
const prometheus::Histogram::BucketBoundaries kStepSeconds = {
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015,   0.02,   0.03,    0.05,  0.075,  0.1,   0.25,  0.5,   1,     2.5};
const prometheus::Histogram::BucketBoundaries kBatchTokens = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

// Bytes the allocator has handed out and not had back, over every malloc arena plus mmapped
// chunks. Unlike RSS it does not count freed memory glibc keeps for reuse (arenas grown by a
// burst of streams stay resident), so a leak shows as growth here and a high-water mark does not.
double HeapInUseBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

// Reads the engine at scrape time.
class ServerMetrics::EngineCollector : public prometheus::Collectable {
 public:
  EngineCollector(const std::atomic<const Engine*>& engine,
                  const std::atomic<const GrammarCache*>& grammars, std::string model)
      : engine_(engine), grammars_(grammars), model_(std::move(model)) {}

  std::vector<MetricFamily> Collect() const override {
    const Engine* engine = engine_.load();
    if (engine == nullptr) return {};
    const EngineStats s = engine->Stats();
    std::vector<MetricFamily> out;
    if (const GrammarCache* grammars = grammars_.load(); grammars != nullptr) {
      const GrammarCacheStats g = grammars->stats();
      MetricFamily compiles{"iquest_grammar_compiles_total",
                            "Structured-output constraints compiled, by result (cached: served "
                            "from the grammar cache without compiling).",
                            MetricType::Counter,
                            {}};
      for (const auto& [result, value] :
           {std::pair<const char*, int64_t>{"compiled", g.num_compiled},
            {"failed", g.num_failed},
            {"cached", g.num_hits}}) {
        ClientMetric metric = Labelled({{"result", result}});
        metric.counter.value = static_cast<double>(value);
        compiles.metric.push_back(metric);
      }
      out.push_back(compiles);
      MetricFamily seconds{"iquest_grammar_compile_seconds_total",
                           "Time spent compiling structured-output constraints (compiled and "
                           "failed).",
                           MetricType::Counter,
                           {Labelled({})}};
      seconds.metric[0].counter.value = g.compile_seconds;
      out.push_back(seconds);
    }
    out.push_back(
        Gauge("iquest_requests_running", "Requests in the running batch.", s.num_running));
    out.push_back(
        Gauge("iquest_requests_waiting", "Requests waiting to be scheduled.", s.num_waiting));
    out.push_back(Gauge("iquest_kv_cache_usage_ratio", "Used KV blocks / all KV blocks (0..1).",
                        s.num_blocks == 0 ? 0.0
                                          : static_cast<double>(s.num_used_blocks) /
                                                static_cast<double>(s.num_blocks)));
    MetricFamily blocks{"iquest_kv_cache_blocks",
                        "KV cache blocks by state: used, cached (reusable prefix), free.",
                        MetricType::Gauge,
                        {}};
    for (const auto& [state, value] : {std::pair<const char*, int64_t>{"used", s.num_used_blocks},
                                       {"cached", s.num_cached_blocks},
                                       {"free", s.num_free_blocks}}) {
      ClientMetric metric = Labelled({{"state", state}});
      metric.gauge.value = static_cast<double>(value);
      blocks.metric.push_back(metric);
    }
    out.push_back(blocks);
    MetricFamily config{
        "iquest_cache_config_info", "KV cache configuration (value 1).", MetricType::Gauge, {}};
    ClientMetric info = Labelled(
        {{"block_size", absl::StrCat(s.block_size)}, {"num_blocks", absl::StrCat(s.num_blocks)}});
    info.gauge.value = 1;
    config.metric.push_back(info);
    out.push_back(config);
    out.push_back(Counter("iquest_prefix_cache_queries_total",
                          "Prompt tokens looked up in the prefix cache at admission.",
                          s.counters.prefix_cache_queries));
    out.push_back(Counter("iquest_prefix_cache_hits_total",
                          "Prompt tokens found in the prefix cache at admission.",
                          s.counters.prefix_cache_hits));
    out.push_back(Counter("iquest_preemptions_total", "Requests preempted (recompute).",
                          s.counters.num_preemptions));
    if (!s.spec_decode.accepted_per_position.empty()) AddSpecDecode(s.spec_decode, out);
    out.push_back(Gauge("iquest_heap_in_use_bytes",
                        "Heap bytes allocated and not freed (glibc mallinfo2); excludes memory "
                        "the allocator keeps after frees, which RSS counts.",
                        HeapInUseBytes()));
    return out;
  }

 private:
  // Speculative decoding, as vLLM's spec_decode counters (only when the engine speculates).
  void AddSpecDecode(const SpecDecodeCounters& c, std::vector<MetricFamily>& out) const {
    out.push_back(Counter("iquest_spec_decode_num_drafts_total",
                          "Request-steps that verified speculative drafts.", c.num_drafts));
    out.push_back(Counter("iquest_spec_decode_num_draft_tokens_total",
                          "Speculative draft tokens verified.", c.num_draft_tokens));
    out.push_back(Counter("iquest_spec_decode_num_accepted_tokens_total",
                          "Speculative draft tokens accepted.", c.num_accepted_tokens));
    MetricFamily per_pos{"iquest_spec_decode_num_accepted_tokens_per_pos_total",
                         "Verifications whose draft at this position (0-based) was accepted.",
                         MetricType::Counter,
                         {}};
    for (size_t i = 0; i < c.accepted_per_position.size(); ++i) {
      ClientMetric metric = Labelled({{"position", absl::StrCat(i)}});
      metric.counter.value = static_cast<double>(c.accepted_per_position[i]);
      per_pos.metric.push_back(metric);
    }
    out.push_back(per_pos);
  }

  ClientMetric Labelled(std::vector<ClientMetric::Label> labels) const {
    ClientMetric metric;
    metric.label.push_back({"model", model_});
    for (auto& label : labels) metric.label.push_back(std::move(label));
    return metric;
  }
  MetricFamily Gauge(const char* name, const char* help, double value) const {
    ClientMetric metric = Labelled({});
    metric.gauge.value = value;
    return {name, help, MetricType::Gauge, {metric}};
  }
  MetricFamily Counter(const char* name, const char* help, int64_t value) const {
    ClientMetric metric = Labelled({});
    metric.counter.value = static_cast<double>(value);
    return {name, help, MetricType::Counter, {metric}};
  }

  const std::atomic<const Engine*>& engine_;
  const std::atomic<const GrammarCache*>& grammars_;
  std::string model_;
};

ServerMetrics::ServerMetrics(std::string model_name)
    : model_name_(std::move(model_name)), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels model = {{"model", model_name_}};
  auto histogram = [&](const char* name, const char* help,
                       const prometheus::Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Register(*registry_)
                .Add(model, buckets);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add(model);
  };
  requests_ = &prometheus::BuildCounter()
                   .Name("iquest_requests_total")
                   .Help("Finished requests by finish reason and api (grpc, http).")
                   .Register(*registry_);
  rejected_ = &prometheus::BuildCounter()
                   .Name("iquest_requests_rejected_total")
                   .Help("Requests refused before running, by gRPC status code and api.")
                   .Register(*registry_);
  prompt_tokens_ = counter("iquest_prompt_tokens_total", "Prompt tokens of finished requests.");
  generation_tokens_ = counter("iquest_generation_tokens_total", "Generated tokens.");
  // Latencies users feel, by front door: {model, api}.
  auto by_api = [&](prometheus::Histogram*(&out)[2], const char* name, const char* help,
                    const prometheus::Histogram::BucketBoundaries& buckets) {
    auto& family = prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
    out[0] = &family.Add({{"model", model_name_}, {"api", "grpc"}}, buckets);
    out[1] = &family.Add({{"model", model_name_}, {"api", "http"}}, buckets);
  };
  by_api(ttft_, "iquest_time_to_first_token_seconds", "Arrival to first token.", kTtftSeconds);
  itl_ = histogram("iquest_inter_token_latency_seconds", "Gap between a sample's tokens.",
                   kItlSeconds);
  by_api(e2e_, "iquest_e2e_request_latency_seconds", "Arrival to finish.", kE2eSeconds);
  queue_ = histogram("iquest_request_queue_seconds", "Arrival to first scheduled.", kQueueSeconds);
  request_prompt_tokens_ =
      histogram("iquest_request_prompt_tokens", "Prompt tokens per request.", kTokens);
  request_generation_tokens_ =
      histogram("iquest_request_generation_tokens", "Generated tokens per request.", kTokens);
  step_duration_ =
      histogram("iquest_step_duration_seconds",
                "Engine step: forward, sampling, scheduler update, outputs handed to the streams.",
                kStepSeconds);
  batch_tokens_ = histogram("iquest_batch_tokens", "Tokens computed in one step.", kBatchTokens);
  // Info metrics (value 1, facts in labels): which build serves which weights, so dashboards and
  // alerts can join on a version or a model fingerprint.
  prometheus::BuildGauge()
      .Name("iquest_build_info")
      .Help("The server's build (value 1): version is the project version + git describe.")
      .Register(*registry_)
      .Add({{"model", model_name_}, {"version", BuildVersion()}})
      .Set(1);
  model_info_ = &prometheus::BuildGauge()
                     .Name("iquest_model_info")
                     .Help("The served model (value 1): architecture and manifest fingerprint.")
                     .Register(*registry_);
}

void ServerMetrics::SetModelInfo(const std::string& architecture, const std::string& fingerprint) {
  model_info_
      ->Add({{"model", model_name_}, {"architecture", architecture}, {"fingerprint", fingerprint}})
      .Set(1);
}

ServerMetrics::~ServerMetrics() {
  if (exposer_ && engine_collector_) exposer_->RemoveCollectable(engine_collector_);
}

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(const std::string& bind_address,
                                                                    const std::string& model_name) {
  std::unique_ptr<ServerMetrics> metrics(new ServerMetrics(model_name));
  // civetweb reports a bind failure by throwing from the constructor; prometheus-cpp offers no
  // other way, so this is the one place we catch.
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(bind_address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", bind_address));
  }
  const std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  metrics->port_ = ports.empty() ? 0 : ports.front();
  metrics->engine_collector_ =
      std::make_shared<EngineCollector>(metrics->engine_, metrics->grammars_, metrics->model_name_);
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  metrics->exposer_->RegisterCollectable(metrics->engine_collector_);
  return metrics;
}

std::string ServerMetrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& f : engine_collector_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

namespace {
const char* ApiName(Api api) { return api == Api::kHttp ? "http" : "grpc"; }
}  // namespace

void ServerMetrics::ObserveRequestDone(const GenerationOutput& last, Api api) {
  requests_
      ->Add({{"model", model_name_},
             {"finish_reason", FinishReasonName(last.finish_reason)},
             {"api", ApiName(api)}})
      .Increment();
  const int a = api == Api::kHttp ? 1 : 0;
  const RequestTimings& t = last.timings;
  prompt_tokens_->Increment(static_cast<double>(last.usage.prompt_tokens));
  request_prompt_tokens_->Observe(static_cast<double>(last.usage.prompt_tokens));
  request_generation_tokens_->Observe(static_cast<double>(last.usage.completion_tokens));
  if (t.first_scheduled != Clock::time_point{})
    queue_->Observe(Seconds(t.arrival, t.first_scheduled));
  if (t.first_token != Clock::time_point{}) ttft_[a]->Observe(Seconds(t.arrival, t.first_token));
  if (t.finished != Clock::time_point{}) e2e_[a]->Observe(Seconds(t.arrival, t.finished));
}

void ServerMetrics::ObserveRejected(int grpc_code, Api api) {
  // gRPC and absl share the canonical code numbers and names ("RESOURCE_EXHAUSTED", ...).
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(grpc_code));
  rejected_->Add({{"model", model_name_}, {"code", name}, {"api", ApiName(api)}}).Increment();
}

void ServerMetrics::ObserveTokens(int64_t num_tokens) {
  generation_tokens_->Increment(static_cast<double>(num_tokens));
}

void ServerMetrics::ObserveInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServerMetrics::ObserveStep(double seconds, int64_t num_batch_tokens) {
  step_duration_->Observe(seconds);
  batch_tokens_->Observe(static_cast<double>(num_batch_tokens));
}

}  // namespace iquest
