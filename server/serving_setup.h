// Start-up pieces of iquest-serve: the listening gRPC servers, the loaded model/tokenizer/engine,
// and termination-signal handling.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/generation_service.h"
#include "server/metrics.h"
#include "server/server_config.h"
#include "server/serving_context.h"

namespace iquest {

struct ListeningServers {
  std::unique_ptr<grpc::Server> main;
  std::unique_ptr<grpc::Server> health;  // Plaintext health only; null without --health-port.
  int port = 0;
  int health_port = -1;
};

// Builds and starts the servers with every limit set explicitly.
absl::StatusOr<ListeningServers> StartServers(const ServerConfig& config,
                                              GenerationService& service);

// Loads the model (and its tokenizer, when the folder has one), sizes the KV cache and starts
// the engine.
absl::StatusOr<std::unique_ptr<ServingContext>> LoadServingContext(const ServerConfig& config,
                                                                   ServerMetrics* metrics);

// The model folder's last path component: the `model` label and GetModelInfo's name.
std::string ModelName(const std::string& model_dir);

void BlockTerminationSignals();
int WaitForTerminationSignal();  // Returns SIGTERM or SIGINT.

}  // namespace iquest
