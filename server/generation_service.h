// GenerationService: the iquest.serve.v1.Generation gRPC service on the callback API. Until the
// model is loaded every call is UNAVAILABLE; after StartDraining, too. Auth (when configured) is
// checked first in every call.
#pragma once

#include <atomic>

#include "iquest/serve/v1/generation.grpc.pb.h"
#include "server/auth.h"
#include "server/serving_context.h"

namespace iquest {

class GenerationService final : public serve::v1::Generation::CallbackService {
 public:
  explicit GenerationService(const BearerAuth* auth) : auth_(auth) {}

  // Called once, when the model, tokenizer and engine are ready. `serving` outlives the service.
  void SetReady(const ServingContext* serving) { serving_.store(serving); }
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // Null until SetReady (the HTTP front door reads it too).
  const ServingContext* serving() const { return serving_.load(); }

  grpc::ServerWriteReactor<serve::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const serve::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const serve::v1::TokenizeRequest* request,
                                     serve::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const serve::v1::DetokenizeRequest* request,
                                       serve::v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ApplyChatTemplate(
      grpc::CallbackServerContext* context, const serve::v1::ApplyChatTemplateRequest* request,
      serve::v1::ApplyChatTemplateResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const serve::v1::GetModelInfoRequest* request,
                                         serve::v1::GetModelInfoResponse* response) override;
  grpc::ServerUnaryReactor* GetServerLoad(grpc::CallbackServerContext* context,
                                          const serve::v1::GetServerLoadRequest* request,
                                          serve::v1::GetServerLoadResponse* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const serve::v1::AbortRequest* request,
                                  serve::v1::AbortResponse* response) override;

 private:
  // OK with the serving context, or the status to finish the call with (auth, loading, draining).
  // With auth, `token_identity` (if set) receives the caller's BearerAuth identity.
  grpc::Status Admit(const grpc::CallbackServerContext& context, const ServingContext** serving,
                     bool needs_tokenizer = false, std::string* token_identity = nullptr) const;

  const BearerAuth* auth_;
  std::atomic<const ServingContext*> serving_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_request_number_{0};
};

}  // namespace iquest
