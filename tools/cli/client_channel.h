// Connection settings shared by iquest-cli and iquest-bench: target, TLS / mTLS, bearer token,
// per-call deadline, plus gRPC status-code names for error reports.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flags.h"

namespace iquest {

struct ConnectionOptions {
  std::string target = "127.0.0.1:50051";
  // A file holding the bearer token. The token is sent as `authorization: Bearer <token>`
  // metadata and is never printed.
  std::string token_file;
  // PEM files. A CA switches the channel to TLS; a cert plus key adds a client identity (mTLS).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Per-call deadline; 0 means none.
  int64_t timeout_ms = 0;
};

// Registers --target, --token-file, --tls-ca, --tls-cert, --tls-key and --timeout-ms.
void AddConnectionFlags(FlagParser& parser, ConnectionOptions* options);

// A channel plus the token read once from --token-file, so every call reuses both.
class Connection {
 public:
  // Reads the token and TLS files and creates `num_channels` channels that do not share a TCP
  // connection (a load generator wants its streams spread over several).
  static absl::StatusOr<Connection> Open(const ConnectionOptions& options, int num_channels = 1);

  const std::shared_ptr<grpc::Channel>& channel(int index = 0) const;
  int num_channels() const { return static_cast<int>(channels_.size()); }

  // Adds the authorization metadata and the --timeout-ms deadline to `context`.
  void Prepare(grpc::ClientContext& context) const;

 private:
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::string token_;
  int64_t timeout_ms_ = 0;
};

// "RESOURCE_EXHAUSTED" for grpc::StatusCode::RESOURCE_EXHAUSTED, and so on.
std::string StatusCodeName(grpc::StatusCode code);

// "RESOURCE_EXHAUSTED: queue full"; the message part is left out when empty.
std::string DescribeStatus(const grpc::Status& status);

}  // namespace iquest
