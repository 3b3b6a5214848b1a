// The fake Generation server used by the client tests.
#include "tests/tools/fake_generation_server.h"

#include <mutex>
#include <thread>

namespace iquest::testing {

namespace v1 = iquest::serve::v1;

class FakeGenerationServer::Service final : public v1::Generation::Service {
 public:
  explicit Service(FakeServerOptions options) : options_(std::move(options)) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    int64_t call = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      call = ++num_generate_calls_;
      last_generate_ = *request;
    }
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    if (options_.reject_every > 0 && call % options_.reject_every == 0) {
      context->AddTrailingMetadata("retry-after-ms", "250");
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full");
    }
    const v1::SamplingParams& sampling = request->sampling();
    const int32_t num_tokens = sampling.has_max_tokens() ? sampling.max_tokens() : 4;
    const int32_t num_samples = sampling.has_n() ? sampling.n() : 1;
    for (int32_t i = 0; i < num_tokens; ++i) {
      if (options_.token_delay.count() > 0) std::this_thread::sleep_for(options_.token_delay);
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      for (int32_t sample = 0; sample < num_samples; ++sample) {
        v1::GenerateResponse response = Token(*request, sample, i);
        if (i + 1 == num_tokens) {
          response.set_finish_reason(v1::FINISH_REASON_LENGTH);
          if (sample + 1 == num_samples) AddSummary(*request, num_tokens * num_samples, response);
        }
        if (!writer->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "gone");
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    for (unsigned char c : request->text()) response->add_token_ids(c);
    return grpc::Status::OK;
  }

  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    for (int32_t id : request->token_ids())
      response->mutable_text()->push_back(static_cast<char>(id));
    return grpc::Status::OK;
  }

  grpc::Status GetModelInfo(grpc::ServerContext* context,
                            const v1::GetModelInfoRequest* /*request*/,
                            v1::GetModelInfoResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    response->set_model_name("fake-model");
    response->set_vocab_size(1000);
    response->set_max_context_length(2048);
    response->set_has_tokenizer(options_.has_tokenizer);
    return grpc::Status::OK;
  }

  grpc::Status GetServerLoad(grpc::ServerContext* context,
                             const v1::GetServerLoadRequest* /*request*/,
                             v1::GetServerLoadResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    response->set_num_running(2);
    response->set_num_waiting(1);
    response->set_kv_cache_usage(0.5F);
    return grpc::Status::OK;
  }

  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    std::lock_guard<std::mutex> lock(mu_);
    last_abort_ = *request;
    response->set_num_requested(request->request_ids_size());
    response->set_num_cancelled(request->request_ids_size());
    return grpc::Status::OK;
  }

  mutable std::mutex mu_;
  int64_t num_generate_calls_ = 0;
  v1::GenerateRequest last_generate_;
  v1::AbortRequest last_abort_;
  std::string last_authorization_;

 private:
  grpc::Status Authorize(grpc::ServerContext* context) {
    std::string authorization;
    const auto& metadata = context->client_metadata();
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      authorization.assign(it->second.data(), it->second.size());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_authorization_ = authorization;
    }
    if (!options_.required_token.empty() && authorization != "Bearer " + options_.required_token) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or bad bearer token");
    }
    return grpc::Status::OK;
  }

  v1::GenerateResponse Token(const v1::GenerateRequest& request, int32_t sample, int32_t i) const {
    v1::GenerateResponse response;
    response.set_request_id(request.request_id());
    response.set_index(sample);
    response.add_token_ids(100 + i);
    if (options_.has_tokenizer) response.set_text("t" + std::to_string(i) + " ");
    return response;
  }

  static void AddSummary(const v1::GenerateRequest& request, int32_t completion_tokens,
                         v1::GenerateResponse& response) {
    const int32_t prompt_tokens = request.has_token_ids()
                                      ? request.token_ids().ids_size()
                                      : static_cast<int32_t>(request.text().size());
    response.mutable_usage()->set_prompt_tokens(prompt_tokens);
    response.mutable_usage()->set_completion_tokens(completion_tokens);
    response.mutable_timings()->set_ttft_seconds(0.001);
    response.mutable_timings()->set_e2e_seconds(0.002);
  }

  const FakeServerOptions options_;
};

FakeGenerationServer::FakeGenerationServer(FakeServerOptions options) {
  const auto credentials =
      options.credentials ? options.credentials : grpc::InsecureServerCredentials();
  service_ = std::make_unique<Service>(std::move(options));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
}

FakeGenerationServer::~FakeGenerationServer() {
  // A deadline, so that a stream a test left open cannot hang the test binary.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

int64_t FakeGenerationServer::num_generate_calls() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->num_generate_calls_;
}

v1::GenerateRequest FakeGenerationServer::last_generate_request() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->last_generate_;
}

v1::AbortRequest FakeGenerationServer::last_abort_request() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->last_abort_;
}

std::string FakeGenerationServer::last_authorization() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->last_authorization_;
}

}  // namespace iquest::testing
