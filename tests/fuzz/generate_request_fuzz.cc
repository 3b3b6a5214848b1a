// libFuzzer: the request path of Generate on arbitrary bytes: a serialized GenerateRequest is
// parsed (as gRPC would), validated and tokenized by ToGenerationRequest against a tiny model,
// then checked by CheckFits as Engine::Submit does. Every input must end in OK or a status; a
// request that passes must satisfy what the engine relies on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/check.h"
#include "kernels/cpu/cpu_backend.h"
#include "scheduler/check_fits.h"
#include "server/request_validation.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace {

iquest::ServingContext* MakeServing() {
  static iquest::testing::TempDir dir;
  iquest::TinyModelOptions options;
  options.vocab_size = 256;
  options.num_layers = 1;
  options.hidden_size = 16;
  options.intermediate_size = 32;
  CHECK(iquest::WriteTinyModel(dir.path(), options).ok());
  auto* serving = new iquest::ServingContext();
  serving->backend = std::make_unique<iquest::CpuBackend>();
  auto model = iquest::LlamaModel::Load(dir.path(), *serving->backend);
  CHECK(model.ok()) << model.status();
  serving->model = std::move(*model);
  serving->max_model_len = 512;
  serving->max_tokens_cap = 512;
  serving->max_prompt_bytes = 1 << 16;
  serving->max_num_seqs = 8;
  return serving;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static iquest::ServingContext* serving = MakeServing();
  iquest::serve::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto parsed = iquest::ToGenerationRequest(request, *serving);
  if (!parsed.ok()) {
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument) << parsed.status();
    return 0;
  }
  const iquest::SamplingParams& s = parsed->sampling;
  CHECK(std::isfinite(s.temperature) && s.temperature >= 0);
  CHECK(s.top_p > 0 && s.top_p <= 1);
  CHECK(s.max_tokens >= 1 && s.max_tokens <= serving->max_tokens_cap);
  CHECK(s.min_tokens >= 0 && s.min_tokens <= s.max_tokens);
  CHECK(s.n >= 1 && s.n <= iquest::kMaxN);
  const iquest::FitLimits limits{256, serving->max_model_len, 1024, 16};
  (void)iquest::CheckFits(parsed->prompt_token_ids, s.max_tokens, limits);
  return 0;
}
