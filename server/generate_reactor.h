// GenerateReactor: one Generate stream. The engine thread hands it outputs through a TokenSink
// and nothing more; the StreamPump's thread builds the responses and records the metrics, and the
// reactor keeps one write in flight and finishes the RPC after the last output. Client
// cancellation and the gRPC deadline reach the engine (Cancel, or the request's own deadline),
// so the request's KV blocks are freed within one engine step.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "iquest/serve/v1/generation.pb.h"

namespace iquest {

struct ServingContext;

// State shared by the reactor (gRPC threads), the pump and its sink (engine thread). The reactor
// may be gone before the engine's last call: then `reactor` is null and outputs are dropped.
struct StreamState;

class GenerateReactor : public grpc::ServerWriteReactor<serve::v1::GenerateResponse> {
 public:
  // Validates and submits `request`; on any error the reactor finishes at once with it.
  // `token_identity`: the caller's BearerAuth identity, empty without auth (RequestOwner).
  GenerateReactor(grpc::CallbackServerContext* context, const serve::v1::GenerateRequest& request,
                  const ServingContext& serving, const std::string& request_id,
                  const std::string& token_identity);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void FinishWith(const grpc::Status& status);

  const ServingContext& serving_;
  std::shared_ptr<StreamState> state_;
};

// Converts one engine output into a response.
serve::v1::GenerateResponse ToResponse(const GenerationOutput& output,
                                       const std::string& request_id);

}  // namespace iquest
