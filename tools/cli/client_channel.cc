// Channels, credentials and call contexts for the iquest clients.
#include "tools/cli/client_channel.h"

#include <array>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace iquest {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ConnectionOptions& options) {
  if (options.tls_ca.empty()) {
    if (!options.tls_cert.empty() || !options.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key need --tls-ca");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile("tls-ca", options.tls_ca));
  if (!options.tls_cert.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile("tls-cert", options.tls_cert));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile("tls-key", options.tls_key));
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  if (path.empty()) return std::string();
  ASSIGN_OR_RETURN(std::string token, ReadFile("token-file", path));
  // Token files usually end in a newline that is not part of the token.
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) return absl::InvalidArgumentError("--token-file: the file is empty");
  // Metadata values must be printable ASCII; saying which byte would leak the token.
  for (char c : token) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError("--token-file: the token holds a non-printable byte");
    }
  }
  return token;
}

}  // namespace

void AddConnectionFlags(FlagParser& parser, ConnectionOptions* options) {
  parser.AddString("target", &options->target, "server address HOST:PORT");
  parser.AddString("token-file", &options->token_file,
                   "file holding a bearer token, sent as `authorization: Bearer <token>`");
  parser.AddString("tls-ca", &options->tls_ca, "PEM CA bundle; enables TLS");
  parser.AddString("tls-cert", &options->tls_cert, "PEM client certificate (mTLS)");
  parser.AddString("tls-key", &options->tls_key, "PEM client private key (mTLS)");
  parser.AddInt("timeout-ms", &options->timeout_ms, "per-call deadline in ms; 0: none", 0,
                int64_t{24} * 3600 * 1000);
}

absl::StatusOr<Connection> Connection::Open(const ConnectionOptions& options, int num_channels) {
  if (options.target.empty()) return absl::InvalidArgumentError("--target must not be empty");
  Connection connection;
  ASSIGN_OR_RETURN(connection.token_, ReadToken(options.token_file));
  ASSIGN_OR_RETURN(auto credentials, MakeCredentials(options));
  connection.timeout_ms_ = options.timeout_ms;
  for (int i = 0; i < num_channels; ++i) {
    grpc::ChannelArguments args;
    // Channels with equal arguments share one subchannel (one TCP connection); a distinct
    // argument per channel and a local subchannel pool give each its own.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("iquest.channel_index", i);
    connection.channels_.push_back(grpc::CreateCustomChannel(options.target, credentials, args));
  }
  return connection;
}

const std::shared_ptr<grpc::Channel>& Connection::channel(int index) const {
  return channels_[static_cast<size_t>(index) % channels_.size()];
}

void Connection::Prepare(grpc::ClientContext& context) const {
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  if (timeout_ms_ > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_));
  }
}

std::string StatusCodeName(grpc::StatusCode code) {
  static constexpr std::array<const char*, 17> kNames = {"OK",
                                                         "CANCELLED",
                                                         "UNKNOWN",
                                                         "INVALID_ARGUMENT",
                                                         "DEADLINE_EXCEEDED",
                                                         "NOT_FOUND",
                                                         "ALREADY_EXISTS",
                                                         "PERMISSION_DENIED",
                                                         "RESOURCE_EXHAUSTED",
                                                         "FAILED_PRECONDITION",
                                                         "ABORTED",
                                                         "OUT_OF_RANGE",
                                                         "UNIMPLEMENTED",
                                                         "INTERNAL",
                                                         "UNAVAILABLE",
                                                         "DATA_LOSS",
                                                         "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  if (index >= 0 && index < static_cast<int>(kNames.size())) return kNames[index];
  return absl::StrCat("CODE_", index);
}

std::string DescribeStatus(const grpc::Status& status) {
  std::string text = StatusCodeName(status.error_code());
  if (!status.error_message().empty()) absl::StrAppend(&text, ": ", status.error_message());
  return text;
}

}  // namespace iquest
