// Bearer-token authentication: tokens come from a file (one per line) and are compared in
// constant time through their SHA-256 digests. Tokens are never logged.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "grpcpp/server_context.h"

namespace iquest {

class BearerAuth {
 public:
  static absl::StatusOr<std::unique_ptr<BearerAuth>> FromFile(const std::string& path);

  // OK; UNAUTHENTICATED when the `authorization: Bearer <token>` metadata is missing or
  // malformed; PERMISSION_DENIED when the token is not one of ours.
  grpc::Status Check(const grpc::ServerContextBase& context) const;
  bool Accepts(const std::string& token) const;

 private:
  explicit BearerAuth(std::vector<Sha256Digest> digests) : digests_(std::move(digests)) {}
  std::vector<Sha256Digest> digests_;
};

}  // namespace iquest
