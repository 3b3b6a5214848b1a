// An in-process stand-in for the iquest-serve Generation server, on 127.0.0.1 with a free port,
// streaming canned tokens so that the clients can be tested without the real server.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "iquest/serve/v1/generation.grpc.pb.h"

namespace iquest::testing {

struct FakeServerOptions {
  // Without a tokenizer responses carry token ids only, as a real server without one would.
  bool has_tokenizer = true;
  // Sleep before each token; streams stop early when the call is cancelled or expires.
  std::chrono::milliseconds token_delay{0};
  // Every k-th Generate call (counting from 1) fails RESOURCE_EXHAUSTED with trailing metadata
  // retry-after-ms: 250. 0: never.
  int64_t reject_every = 0;
  // When set, calls without `authorization: Bearer <required_token>` fail UNAUTHENTICATED.
  std::string required_token;
  // Listening credentials; null means plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// Generate streams max_tokens (default 4) tokens per sample, one per response: id 100 + i and,
// with a tokenizer, text "t<i> ". The last response of a sample has FINISH_REASON_LENGTH; the
// very last also carries usage (prompt_tokens = the prompt's ids or bytes) and timings.
// Tokenize maps each byte to its value and Detokenize back. The health service is gRPC's default.
class FakeGenerationServer {
 public:
  explicit FakeGenerationServer(FakeServerOptions options = {});
  ~FakeGenerationServer();

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  grpc::Server& server() { return *server_; }

  // What the server saw; each getter is thread-safe.
  int64_t num_generate_calls() const;
  iquest::serve::v1::GenerateRequest last_generate_request() const;
  iquest::serve::v1::AbortRequest last_abort_request() const;
  // The `authorization` metadata of the last call of any kind ("" when absent).
  std::string last_authorization() const;

  class Service;

 private:
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace iquest::testing
