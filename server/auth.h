// Bearer-token authentication: tokens come from a file (one per line) and are compared in
// constant time through their SHA-256 digests. Tokens are never logged.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "grpcpp/server_context.h"

namespace iquest {

// The scope of a caller's request_ids (Request::owner): the bearer token's identity when auth is
// on, else the request's tenant. The prefixes keep the two kinds apart.
std::string RequestOwner(const std::string& token_identity, const std::string& tenant);

class BearerAuth {
 public:
  static absl::StatusOr<std::unique_ptr<BearerAuth>> FromFile(const std::string& path);

  // OK; UNAUTHENTICATED when the `authorization: Bearer <token>` metadata is missing or
  // malformed; PERMISSION_DENIED when the token is not one of ours. On OK, `identity` (if set)
  // names the token without revealing it: "token:" and 16 hex digits of its SHA-256.
  grpc::Status Check(const grpc::ServerContextBase& context, std::string* identity = nullptr) const;
  bool Accepts(const std::string& token) const;
  // The identity of `token` if it is one of ours (the HTTP front door's check).
  std::optional<std::string> IdentityOf(const std::string& token) const;

 private:
  explicit BearerAuth(std::vector<Sha256Digest> digests) : digests_(std::move(digests)) {}
  std::vector<Sha256Digest> digests_;
};

}  // namespace iquest
