// iquest-serve: loads a model and serves the Generation API over gRPC. Life cycle:
//   start listening (readiness NOT_SERVING) -> load -> readiness SERVING -> SIGTERM/SIGINT ->
//   readiness NOT_SERVING, new calls UNAVAILABLE -> in-flight calls run up to --drain-timeout-s,
//   then are cancelled -> exit 0.
// A signal while loading ends the process at once (exit 0): nothing has been served, and a 40B
// load must not outlast the pod's termination grace period.
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/generation_service.h"
#include "server/http/http_server.h"
#include "server/http/openai_service.h"
#include "server/server_config.h"
#include "server/serving_setup.h"

namespace iquest {
namespace {

constexpr char kReadinessService[] = "iquest.serve.v1.Generation";

void SetReadiness(grpc::Server* server, bool serving) {
  if (server == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", true);  // Liveness: the process is up.
  health->SetServingStatus(kReadinessService, serving);
}

// The termination signals, taken by one thread for the whole life of the process. Until
// StartServing, a signal exits at once; after it, WaitForStop returns the signal. The mutex makes
// the two exclusive: once StartServing returned, no signal exits mid-way, and a signal that won
// the race leaves readiness unreported.
class SignalWatcher {
 public:
  SignalWatcher()
      : thread_([this] {
          const int signal_number = WaitForTerminationSignal();
          std::lock_guard<std::mutex> lock(mutex_);
          if (!serving_) {
            LOG(INFO) << "event=stopped_while_loading" << Kv("signal", signal_number);
            std::fflush(nullptr);
            std::_Exit(0);
          }
          signal_ = signal_number;
          signalled_.notify_all();
        }) {
    thread_.detach();  // Ends with the process (_Exit), never joined.
  }

  void StartServing() {
    std::lock_guard<std::mutex> lock(mutex_);
    serving_ = true;
  }

  int WaitForStop() {
    std::unique_lock<std::mutex> lock(mutex_);
    signalled_.wait(lock, [this] { return signal_ != 0; });
    return signal_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable signalled_;
  bool serving_ = false;  // Guarded by mutex_.
  int signal_ = 0;        // Guarded by mutex_.
  std::thread thread_;
};

int Run(const ServerConfig& config) {
  // Lives as long as the process: its thread never ends, and may fire after Run returns.
  SignalWatcher& signals = *new SignalWatcher();
  std::unique_ptr<BearerAuth> auth;
  if (!config.auth_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<BearerAuth>> loaded =
        BearerAuth::FromFile(config.auth_token_file);
    if (!loaded.ok()) {
      LOG(ERROR) << "event=startup_failed" << Kv("error", loaded.status().ToString());
      return 1;
    }
    auth = std::move(*loaded);
  }
  grpc::EnableDefaultHealthCheckService(true);
  GenerationService service(auth.get());
  absl::StatusOr<ListeningServers> servers = StartServers(config, service);
  if (!servers.ok()) {
    LOG(ERROR) << "event=startup_failed" << Kv("error", servers.status().ToString());
    return 1;
  }
  SetReadiness(servers->main.get(), false);
  SetReadiness(servers->health.get(), false);
  std::unique_ptr<ServerMetrics> metrics;
  if (config.metrics_port >= 0) {
    const std::string model_name = ModelName(config.model_dir);
    absl::StatusOr<std::unique_ptr<ServerMetrics>> started =
        ServerMetrics::Start(absl::StrCat(config.host, ":", config.metrics_port), model_name);
    if (!started.ok()) {
      LOG(ERROR) << "event=startup_failed" << Kv("error", started.status().ToString());
      return 1;
    }
    metrics = std::move(*started);
  }
  // The HTTP API shares the engine and the readiness / drain state with gRPC.
  OpenAiService openai(auth.get(), service, metrics.get(),
                       OpenAiServiceOptions{config.http_request_timeout_s});
  std::unique_ptr<HttpServer> http;
  if (config.http_port >= 0) {
    HttpServerOptions options;
    options.host = config.host;
    options.port = static_cast<int>(config.http_port);
    options.num_threads = static_cast<int>(config.http_threads);
    options.max_body_bytes = config.max_message_bytes;
    options.idle_timeout_s = config.http_idle_timeout_s;
    options.write_timeout_s = config.http_write_timeout_s;
    options.max_connections = config.http_max_connections;
    // The gRPC port's TLS flags serve the HTTP port too.
    for (const auto& [path, pem] :
         {std::pair<const std::string&, std::string&>{config.tls_cert, options.tls_cert_pem},
          {config.tls_key, options.tls_key_pem},
          {config.tls_client_ca, options.tls_client_ca_pem}}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> text = ReadFileToString(path);
      if (!text.ok()) {
        LOG(ERROR) << "event=startup_failed" << Kv("error", text.status().ToString());
        return 1;
      }
      pem = *std::move(text);
    }
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(
        options, [&openai](HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
          openai.Handle(std::move(request), std::move(exchange));
        });
    if (!started.ok()) {
      LOG(ERROR) << "event=startup_failed" << Kv("error", started.status().ToString());
      return 1;
    }
    http = std::move(*started);
  }
  LOG(INFO) << "event=listening" << Kv("host", config.host) << Kv("port", servers->port)
            << Kv("health_port", servers->health_port)
            << Kv("metrics_port", metrics ? metrics->port() : -1)
            << Kv("http_port", http ? http->port() : -1) << config.Describe();

  absl::StatusOr<std::unique_ptr<ServingContext>> serving =
      LoadServingContext(config, metrics.get());
  if (!serving.ok()) {
    LOG(ERROR) << "event=load_failed" << Kv("error", serving.status().ToString());
    return 1;
  }
  if (config.testing_load_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(config.testing_load_delay_ms));
  }
  signals.StartServing();
  service.SetReady(serving->get());
  SetReadiness(servers->main.get(), true);
  SetReadiness(servers->health.get(), true);
  LOG(INFO) << "event=ready" << Kv("model", (*serving)->model_name)
            << Kv("kv_blocks", (*serving)->engine->Stats().num_blocks)
            << Kv("max_model_len", (*serving)->max_model_len);

  const int signal_number = signals.WaitForStop();
  LOG(INFO) << "event=draining" << Kv("signal", signal_number)
            << Kv("drain_timeout_s", config.drain_timeout_s);
  SetReadiness(servers->main.get(), false);
  SetReadiness(servers->health.get(), false);
  service.StartDraining();
  // In-flight requests finish or, at the deadline, are cancelled; each stream then ends.
  (*serving)->engine->Shutdown(absl::Seconds(config.drain_timeout_s));
  // The engine has drained, so every call has ended; what remains is idle client connections,
  // which gRPC would otherwise wait for until the deadline.
  const auto grace = std::chrono::system_clock::now() + std::chrono::milliseconds(500);
  servers->main->Shutdown(grace);
  if (servers->health) servers->health->Shutdown(grace);
  if (metrics) {
    metrics->SetEngine(nullptr);
    metrics->SetGrammarCache(nullptr);
  }
  LOG(INFO) << "event=stopped";
  // Every call has ended and nothing is left to write: skip the destructors. Tearing down the
  // metrics HTTP server and gRPC's internals takes 1-3 s of polling timeouts, which would push
  // the exit past the drain bound that Kubernetes' terminationGracePeriodSeconds is sized for.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  // Block the termination signals in every thread (gRPC's included); main waits for them.
  iquest::BlockTerminationSignals();
  iquest::ServerConfig config;
  iquest::FlagParser flags("iquest-serve", "Serves a model over gRPC (iquest.serve.v1).");
  config.RegisterFlags(flags);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  const absl::Status valid = config.Validate();
  if (!valid.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(valid.message()).c_str());
    return 2;
  }
  iquest::SetMinLogLevel(config.log_level == "debug"     ? iquest::LogLevel::kDebug
                         : config.log_level == "warning" ? iquest::LogLevel::kWarning
                         : config.log_level == "error"   ? iquest::LogLevel::kError
                                                         : iquest::LogLevel::kInfo);
  return iquest::Run(config);
}
