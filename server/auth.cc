#include "server/auth.h"

#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/mapped_file.h"
#include "common/status.h"

namespace iquest {
namespace {

Sha256Digest Digest(std::string_view text) {
  Sha256 hash;
  hash.Update(text.data(), text.size());
  return hash.Finish();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BearerAuth>> BearerAuth::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  std::vector<Sha256Digest> digests;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) digests.push_back(Digest(std::string_view(line.data(), line.size())));
  }
  if (digests.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--auth-token-file ", path, " holds no token"));
  }
  return std::unique_ptr<BearerAuth>(new BearerAuth(std::move(digests)));
}

std::string RequestOwner(const std::string& token_identity, const std::string& tenant) {
  return token_identity.empty() ? "tenant:" + tenant : token_identity;
}

bool BearerAuth::Accepts(const std::string& token) const {
  // Equal-length digests compared without early exit, against every token: the time taken does
  // not depend on how much of a guess is right, nor on which token matched.
  const Sha256Digest presented = Digest(token);
  uint8_t any_match = 0;
  for (const Sha256Digest& digest : digests_) {
    uint8_t difference = 0;
    for (size_t i = 0; i < digest.size(); ++i) difference |= digest[i] ^ presented[i];
    any_match |= static_cast<uint8_t>(difference == 0);
  }
  return any_match != 0;
}

std::optional<std::string> BearerAuth::IdentityOf(const std::string& token) const {
  if (!Accepts(token)) return std::nullopt;
  const Sha256Digest digest = Digest(token);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string identity = "token:";
  for (size_t i = 0; i < 8; ++i) {
    identity.push_back(kHex[digest[i] >> 4]);
    identity.push_back(kHex[digest[i] & 15]);
  }
  return identity;
}

grpc::Status BearerAuth::Check(const grpc::ServerContextBase& context,
                               std::string* identity) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing authorization metadata");
  }
  const std::string value(it->second.data(), it->second.size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (value.size() <= kPrefix.size() || value.compare(0, kPrefix.size(), kPrefix) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization must be \"Bearer <token>\"");
  }
  const std::string token = value.substr(kPrefix.size());
  if (!Accepts(token)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "token not accepted");
  }
  if (identity != nullptr) *identity = *IdentityOf(token);
  return grpc::Status::OK;
}

}  // namespace iquest
