#include "server/serving_setup.h"

#include <sys/stat.h>

#include <csignal>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "kernels/make_backend.h"
#include "model/manifest.h"
#include "model/model_files.h"
#include "structured/tokenizer_vocabulary.h"

namespace iquest {
namespace {

// The health-only server needs one service of its own besides the built-in health service;
// this one answers every other method UNIMPLEMENTED.
class UnimplementedGenericService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "health port")); }
      void OnDone() override { delete this; }
    };
    return new Reactor();
  }
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerConfig& config) {
  if (config.tls_cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  ASSIGN_OR_RETURN(const std::string cert, ReadFileToString(config.tls_cert));
  ASSIGN_OR_RETURN(const std::string key, ReadFileToString(config.tls_key));
  options.pem_key_cert_pairs.push_back({key, cert});
  if (!config.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs, ReadFileToString(config.tls_client_ca));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

void ApplyLimits(const ServerConfig& config, grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(config.max_concurrent_streams));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(config.keepalive_time_s * 1000));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(config.keepalive_timeout_s * 1000));
  // Long prefills leave streams silent: pings inside calls are fine, too frequent ones are not.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(config.min_ping_interval_s * 1000));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // Half-open connections (a port scanner, a client that never sends its preface) are closed.
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(config.handshake_timeout_s * 1000));
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, 16 * 1024);
  grpc::ResourceQuota quota("iquest-serve");
  quota.SetMaxThreads(64);
  builder.SetResourceQuota(quota);
}

}  // namespace

absl::StatusOr<ListeningServers> StartServers(const ServerConfig& config,
                                              GenerationService& service) {
  ListeningServers servers;
  ASSIGN_OR_RETURN(auto credentials, Credentials(config));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(config.host, ":", config.port), credentials, &servers.port);
  ApplyLimits(config, builder);
  builder.RegisterService(&service);
  servers.main = builder.BuildAndStart();
  if (servers.main == nullptr || servers.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.host, ":", config.port));
  }
  if (config.health_port >= 0) {
    // Kubelet gRPC probes cannot speak TLS: health gets its own plaintext port.
    grpc::ServerBuilder health_builder;
    health_builder.AddListeningPort(absl::StrCat(config.host, ":", config.health_port),
                                    grpc::InsecureServerCredentials(), &servers.health_port);
    static UnimplementedGenericService unimplemented;
    health_builder.RegisterCallbackGenericService(&unimplemented);
    servers.health = health_builder.BuildAndStart();
    if (servers.health == nullptr || servers.health_port == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", config.host, ":", config.health_port));
    }
  }
  return servers;
}

namespace {

// The tokenizer's streaming decoder as the engine's TextStream.
class DetokenizerStream : public TextStream {
 public:
  DetokenizerStream(const Tokenizer& tokenizer, bool skip_special_tokens, bool clean_up_spaces)
      : detokenizer_(tokenizer, skip_special_tokens, clean_up_spaces) {}
  std::string Push(int32_t token) override { return detokenizer_.Push(token); }
  std::string Flush() override { return detokenizer_.Flush(); }

 private:
  IncrementalDetokenizer detokenizer_;
};

bool HasTokenizerFiles(const std::string& dir) {
  struct stat info {};
  return ::stat((dir + "/tokenizer.json").c_str(), &info) == 0 ||
         ::stat((dir + "/tokenizer.model").c_str(), &info) == 0;
}

absl::Status LoadTokenizer(const ServerConfig& config, ServingContext& serving) {
  // A .gguf's tokenizer is read from the files beside it, not from its metadata.
  ASSIGN_OR_RETURN(const ModelFiles files, FindModelFiles(config.model_dir));
  if (!HasTokenizerFiles(files.folder)) {
    LOG(WARNING) << "event=no_tokenizer" << Kv("note", "only token_ids input will be accepted");
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(serving.tokenizer, Tokenizer::Load(files.folder));
  std::string chat_spec = config.chat_template;  // A fallback's name, or a Jinja file's text.
  if (!chat_spec.empty() && !IsChatTemplateName(chat_spec)) {
    absl::StatusOr<std::string> source = ReadFileToString(chat_spec);
    if (!source.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--chat-template ", chat_spec, ": not a fallback name (chatml, llama3, llama2) and ",
          source.status().message()));
    }
    chat_spec = std::move(*source);
  }
  absl::StatusOr<ChatTemplate> chat = ChatTemplateFor(*serving.tokenizer, chat_spec);
  if (chat.ok()) {
    serving.chat_template = *chat;
  } else if (!config.chat_template.empty()) {
    return chat.status();  // An explicit but bad --chat-template is a start-up error.
  } else {
    serving.chat_template_error = chat.status();
  }
  return absl::OkStatus();
}

// Bytes of one block of `num_layers` KV layers (K and V).
int64_t BytesPerBlock(int64_t num_layers, const ModelConfig& model, int64_t block_size,
                      DType dtype) {
  return 2 * num_layers * block_size * model.num_kv_heads * model.head_dim *
         static_cast<int64_t>(DTypeSize(dtype));
}

// The KV blocks `megabytes` hold for `model`: its global layers' blocks, after a Loop model's
// local pool (`num_local_blocks` blocks of its later passes' layers) has taken its share.
int64_t KvBlocksIn(int64_t megabytes, const ModelConfig& model, int64_t block_size, DType dtype,
                   int64_t num_local_blocks = 0) {
  const int64_t num_local_layers = model.num_kv_layers() - model.num_layers;
  const int64_t local_bytes =
      num_local_blocks * BytesPerBlock(num_local_layers, model, block_size, dtype);
  const int64_t global_layers = num_local_blocks > 0 ? model.num_layers : model.num_kv_layers();
  return std::max<int64_t>(1, ((megabytes << 20) - local_bytes) /
                                  BytesPerBlock(global_layers, model, block_size, dtype));
}

// --speculative: the proposer's settings, and for `draft` the draft model, whose vocabulary
// must be the target's token for token (the engine checks sizes and EOS ids).
absl::Status SetUpSpeculation(const ServerConfig& config, ServingContext& serving,
                              EngineConfig& engine) {
  SpeculationConfig& spec = engine.speculation;
  ASSIGN_OR_RETURN(spec.method, ParseSpeculationMethod(config.speculative));
  spec.num_speculative_tokens = static_cast<int32_t>(config.num_speculative_tokens);
  spec.ngram_min = static_cast<int32_t>(config.ngram_min);
  spec.ngram_max = static_cast<int32_t>(config.ngram_max);
  spec.adaptive = config.speculative_adaptive;
  if (spec.method != SpeculationMethod::kDraft) return absl::OkStatus();
  ASSIGN_OR_RETURN(serving.draft_model, LlamaModel::Load(config.draft_model_dir, *serving.backend));
  serving.draft_model_name = ModelName(config.draft_model_dir);
  ASSIGN_OR_RETURN(const ModelFiles files, FindModelFiles(config.draft_model_dir));
  if (serving.tokenizer != nullptr && HasTokenizerFiles(files.folder)) {
    ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> draft, Tokenizer::Load(files.folder));
    if (draft->vocab_size() != serving.tokenizer->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("--draft-model's tokenizer has ",
                                                     draft->vocab_size(), " tokens, --model's ",
                                                     serving.tokenizer->vocab_size()));
    }
    for (int32_t id = 0; id < draft->vocab_size(); ++id) {
      if (draft->TokenBytes(id) != serving.tokenizer->TokenBytes(id)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--draft-model's tokenizer differs from --model's at token id ", id));
      }
    }
  }
  engine.draft_model = serving.draft_model.get();
  engine.draft_kv_cache.block_size = config.block_size;
  engine.draft_kv_cache.dtype = engine.kv_cache.dtype;
  engine.draft_kv_cache.num_blocks =
      KvBlocksIn(config.draft_kv_cache_mb, serving.draft_model->config(), config.block_size,
                 engine.draft_kv_cache.dtype);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServingContext>> LoadServingContext(const ServerConfig& config,
                                                                   ServerMetrics* metrics) {
  auto serving = std::make_unique<ServingContext>();
  serving->metrics = metrics;
  serving->request_log_json = config.request_log_format == "json";
  serving->device = config.device;
  serving->model_name = ModelName(config.model_dir);
  // Before anything is loaded: the config, weights and tokenizer must belong together.
  ASSIGN_OR_RETURN(const ManifestCheck manifest,
                   CheckModelManifest(config.model_dir, config.allow_manifest_mismatch));
  serving->model_fingerprint = manifest.fingerprint;
  ASSIGN_OR_RETURN(
      serving->backend,
      MakeBackend(config.device == "cuda" ? Device::kCuda : Device::kCpu, config.backend));
  ASSIGN_OR_RETURN(serving->model, LlamaModel::Load(config.model_dir, *serving->backend));
  RETURN_IF_ERROR(LoadTokenizer(config, *serving));
  const ModelConfig& model = serving->model->config();
  if (serving->tokenizer != nullptr) {
    serving->grammars =
        std::make_unique<GrammarCache>(BuildTokenVocabulary(*serving->tokenizer, model.vocab_size),
                                       static_cast<size_t>(config.grammar_cache_size),
                                       absl::Milliseconds(config.grammar_compile_timeout_ms));
  }
  serving->max_model_len = config.max_model_len > 0
                               ? std::min(config.max_model_len, model.max_context_len)
                               : model.max_context_len;
  serving->max_tokens_cap = config.max_tokens_cap > 0
                                ? std::min(config.max_tokens_cap, serving->max_model_len)
                                : serving->max_model_len;
  serving->max_prompt_bytes = config.max_prompt_bytes;
  serving->max_num_seqs = config.max_num_seqs;
  EngineConfig engine;
  engine.kv_cache.block_size = config.block_size;
  engine.kv_cache.num_blocks = config.num_kv_blocks;
  engine.kv_cache.dtype = serving->backend->preferred_kv_dtype();
  engine.scheduler.max_num_seqs = config.max_num_seqs;
  engine.scheduler.max_num_batched_tokens = config.max_num_batched_tokens;
  SetUpLocalPool(model, engine);  // Loop models: their local pool, sized by the seats.
  if (engine.kv_cache.num_blocks == 0) {
    engine.kv_cache.num_blocks =
        KvBlocksIn(config.kv_cache_mb, model, config.block_size, engine.kv_cache.dtype,
                   engine.kv_cache.num_local_blocks);
  }
  engine.scheduler.long_prefill_token_threshold = config.long_prefill_token_threshold;
  engine.scheduler.min_steps_before_priority_preemption =
      config.min_steps_before_priority_preemption;
  ASSIGN_OR_RETURN(engine.scheduler.tenant_weights, LoadTenantWeights(config.tenant_weights_file));
  engine.scheduler.max_waiting_requests = config.max_queue;
  engine.scheduler.max_model_len = serving->max_model_len;
  engine.scheduler.enable_prefix_caching = config.enable_prefix_caching;
  if (serving->tokenizer != nullptr) {
    const Tokenizer* tokenizer = serving->tokenizer.get();
    engine.text_stream_factory = [tokenizer](const SamplingParams& params) {
      // A constrained output's text is exactly its tokens' bytes: clean-up would change what
      // the grammar accepted (" ." -> "." inside a JSON string).
      return std::make_unique<DetokenizerStream>(*tokenizer, params.skip_special_tokens,
                                                 /*clean_up_spaces=*/params.grammar == nullptr);
    };
  }
  if (metrics != nullptr) {
    engine.step_observer = [metrics](double seconds, int64_t num_tokens) {
      metrics->ObserveStep(seconds, num_tokens);
    };
  }
  serving->stream_pump = std::make_unique<StreamPump>();
  if (!config.kv_events_endpoint.empty()) {
    ASSIGN_OR_RETURN(
        serving->kv_events,
        KvEventsPublisher::Start(config.kv_events_endpoint, config.kv_events_topic,
                                 config.block_size, config.device == "cuda" ? "GPU" : "CPU"));
    engine.scheduler.record_kv_events = true;
    KvEventsPublisher* publisher = serving->kv_events.get();
    engine.kv_event_observer = [publisher](std::vector<KvCacheEvent> events) {
      publisher->Publish(std::move(events));
    };
  }
  RETURN_IF_ERROR(SetUpSpeculation(config, *serving, engine));
  ASSIGN_OR_RETURN(serving->engine, Engine::Create(*serving->model, engine));
  if (metrics != nullptr) {
    metrics->SetModelInfo(serving->model->config().architecture_name, serving->model_fingerprint);
    metrics->SetEngine(serving->engine.get());
    metrics->SetGrammarCache(serving->grammars.get());
  }
  return serving;
}

std::string ModelName(const std::string& model_dir) {
  const size_t last = model_dir.find_last_not_of('/');
  const std::string trimmed = model_dir.substr(0, last == std::string::npos ? 0 : last + 1);
  return trimmed.substr(trimmed.find_last_of('/') + 1);
}

void BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) != 0) {
  }
  return signal_number;
}

}  // namespace iquest
