#include "server/generation_service.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/build_version.h"
#include "server/generate_reactor.h"
#include "server/request_validation.h"

namespace iquest {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// A unary call's reactor, finished at once with `status`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Rejects every call with one status; used before the real handler runs.
class RejectedStream : public grpc::ServerWriteReactor<serve::v1::GenerateResponse> {
 public:
  explicit RejectedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::Status GenerationService::Admit(const grpc::CallbackServerContext& context,
                                      const ServingContext** serving, bool needs_tokenizer,
                                      std::string* token_identity) const {
  if (auth_ != nullptr) {
    const grpc::Status auth = auth_->Check(context, token_identity);
    if (!auth.ok()) return auth;
  }
  if (draining_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is draining");
  }
  *serving = serving_.load();
  if (*serving == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is loading");
  }
  if (needs_tokenizer && (*serving)->tokenizer == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this model has no tokenizer");
  }
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<serve::v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const serve::v1::GenerateRequest* request) {
  const ServingContext* serving = nullptr;
  std::string token_identity;
  const grpc::Status admitted = Admit(*context, &serving, false, &token_identity);
  if (!admitted.ok()) return new RejectedStream(admitted);
  std::string request_id = request->request_id();
  if (request_id.empty()) {
    request_id =
        absl::StrCat("req-", next_request_number_.fetch_add(1), "-", std::random_device()());
  }
  return new GenerateReactor(context, *request, *serving, request_id, token_identity);
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const serve::v1::TokenizeRequest* request,
                                                      serve::v1::TokenizeResponse* response) {
  const ServingContext* serving = nullptr;
  const grpc::Status admitted = Admit(*context, &serving, /*needs_tokenizer=*/true);
  if (!admitted.ok()) return Done(context, admitted);
  if (static_cast<int64_t>(request->text().size()) > serving->max_prompt_bytes) {
    return Done(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      absl::StrCat("text exceeds max_prompt_bytes ",
                                                   serving->max_prompt_bytes)));
  }
  EncodeOptions options;
  options.add_special_tokens =
      request->has_add_special_tokens() ? request->add_special_tokens() : true;
  options.parse_special_tokens =
      request->has_parse_special_tokens() ? request->parse_special_tokens() : true;
  const absl::StatusOr<std::vector<int32_t>> ids =
      serving->tokenizer->Encode(request->text(), options);
  if (!ids.ok()) return Done(context, ToGrpc(ids.status()));
  for (int32_t id : *ids) response->add_token_ids(id);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                        const serve::v1::DetokenizeRequest* request,
                                                        serve::v1::DetokenizeResponse* response) {
  const ServingContext* serving = nullptr;
  const grpc::Status admitted = Admit(*context, &serving, /*needs_tokenizer=*/true);
  if (!admitted.ok()) return Done(context, admitted);
  const absl::Status ids_ok = CheckTokenIds(request->token_ids(), *serving, "token_ids");
  if (!ids_ok.ok()) return Done(context, ToGrpc(ids_ok));
  const std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  const bool skip = request->has_skip_special_tokens() ? request->skip_special_tokens() : true;
  response->set_text(serving->tokenizer->Decode(ids, skip));
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::ApplyChatTemplate(
    grpc::CallbackServerContext* context, const serve::v1::ApplyChatTemplateRequest* request,
    serve::v1::ApplyChatTemplateResponse* response) {
  const ServingContext* serving = nullptr;
  const grpc::Status admitted = Admit(*context, &serving);
  if (!admitted.ok()) return Done(context, admitted);
  const absl::StatusOr<RenderedChat> chat = RenderChat(request->chat(), *serving);
  if (!chat.ok()) return Done(context, ToGrpc(chat.status()));
  // The ids are what Generate would run: content's special-token strings stay plain text.
  const absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(*serving->tokenizer, *chat);
  if (!ids.ok()) return Done(context, ToGrpc(ids.status()));
  response->set_text(chat->text);
  for (int32_t id : *ids) response->add_token_ids(id);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(
    grpc::CallbackServerContext* context, const serve::v1::GetModelInfoRequest* /*request*/,
    serve::v1::GetModelInfoResponse* response) {
  const ServingContext* serving = nullptr;
  const grpc::Status admitted = Admit(*context, &serving);
  if (!admitted.ok()) return Done(context, admitted);
  const ModelConfig& config = serving->model->config();
  response->set_model_name(serving->model_name);
  response->set_architecture(config.architecture_name);
  response->set_loop_num(static_cast<int32_t>(config.loop_num));
  response->set_loop_window(static_cast<int32_t>(config.loop_window));
  for (const int64_t window : config.layer_windows) {
    response->add_layer_sliding_windows(static_cast<int32_t>(window));
  }
  response->set_vocab_size(static_cast<int32_t>(config.vocab_size));
  response->set_max_context_length(static_cast<int32_t>(serving->max_model_len));
  for (int32_t id : config.eos_token_ids) response->add_eos_token_ids(id);
  response->set_bos_token_id(config.bos_token_id);
  const EngineStats stats = serving->engine->Stats();
  response->set_kv_block_size(static_cast<int32_t>(stats.block_size));
  response->set_num_kv_blocks(static_cast<int32_t>(stats.num_blocks));
  response->set_device(serving->device);
  response->set_build_version(BuildVersion());
  response->set_model_fingerprint(serving->model_fingerprint);
  response->set_has_tokenizer(serving->tokenizer != nullptr);
  const SpeculationConfig& spec = serving->engine->config().speculation;
  response->set_speculative_method(SpeculationMethodName(spec.method));
  response->set_num_speculative_tokens(
      spec.method == SpeculationMethod::kNone ? 0 : spec.num_speculative_tokens);
  response->set_draft_model_name(serving->draft_model_name);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::GetServerLoad(
    grpc::CallbackServerContext* context, const serve::v1::GetServerLoadRequest* /*request*/,
    serve::v1::GetServerLoadResponse* response) {
  const ServingContext* serving = nullptr;
  const grpc::Status admitted = Admit(*context, &serving);
  if (!admitted.ok()) return Done(context, admitted);
  const EngineStats stats = serving->engine->Stats();
  response->set_num_running(static_cast<int32_t>(stats.num_running));
  response->set_num_waiting(static_cast<int32_t>(stats.num_waiting));
  response->set_num_kv_blocks(static_cast<int32_t>(stats.num_blocks));
  response->set_num_used_kv_blocks(static_cast<int32_t>(stats.num_used_blocks));
  response->set_num_cached_kv_blocks(static_cast<int32_t>(stats.num_cached_blocks));
  response->set_kv_cache_usage(stats.num_blocks == 0 ? 0.0f
                                                     : static_cast<float>(stats.num_used_blocks) /
                                                           static_cast<float>(stats.num_blocks));
  response->set_max_num_seqs(static_cast<int32_t>(serving->max_num_seqs));
  response->set_num_preemptions(stats.counters.num_preemptions);
  response->set_draining(draining_.load());
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::Abort(grpc::CallbackServerContext* context,
                                                   const serve::v1::AbortRequest* request,
                                                   serve::v1::AbortResponse* response) {
  const ServingContext* serving = nullptr;
  std::string token_identity;
  const grpc::Status admitted = Admit(*context, &serving, false, &token_identity);
  if (!admitted.ok()) return Done(context, admitted);
  if (request->request_ids_size() > 1024) {
    return Done(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "request_ids must hold at most 1024 ids"));
  }
  // Only the caller's own requests: another caller's live id answers as if it did not exist.
  const std::string owner = RequestOwner(token_identity, request->tenant());
  int32_t num_cancelled = 0;
  for (const std::string& id : request->request_ids()) {
    if (serving->engine->Cancel(owner, id)) ++num_cancelled;
  }
  response->set_num_requested(request->request_ids_size());
  response->set_num_cancelled(num_cancelled);
  if (num_cancelled == 0 && request->request_ids_size() > 0) {
    return Done(context, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                      "none of request_ids is a live request of this caller"));
  }
  return Done(context, grpc::Status::OK);
}

}  // namespace iquest
