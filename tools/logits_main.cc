// iquest-logits: writes the logits of every prompt position as raw little-endian f32
// [num_prompt_tokens, vocab]. The forward-parity test compares them with an independent
// NumPy implementation.
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/llama.h"

namespace iquest {
namespace {

absl::Status Run(const std::string& model_dir, const std::string& prompt_text, int64_t chunk_size,
                 int64_t block_size, const std::string& out_path,
                 const BackendOptions& backend_options) {
  ASSIGN_OR_RETURN(auto backend, MakeBackend(Device::kCpu, backend_options));
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(model_dir, *backend));
  std::vector<int32_t> prompt;
  RETURN_IF_ERROR(ParseIntList(prompt_text, 0, model->config().vocab_size - 1, &prompt));
  const int64_t num_tokens = static_cast<int64_t>(prompt.size());
  if (num_tokens == 0) return absl::InvalidArgumentError("--prompt-ids must not be empty");
  KvCacheConfig cache_config;
  cache_config.block_size = block_size;
  cache_config.num_blocks = (num_tokens + block_size - 1) / block_size;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(*backend, model->config(), cache_config));
  std::vector<int32_t> block_table(static_cast<size_t>(cache_config.num_blocks));
  std::iota(block_table.begin(), block_table.end(), 0);
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(out_path, ": cannot write"));
  // Prefill in chunks of `chunk_size` tokens (0: all at once), keeping every row's logits.
  const int64_t step = chunk_size > 0 ? chunk_size : num_tokens;
  BatchBuilder builder(block_size);
  std::vector<float> logits;
  for (int64_t begin = 0; begin < num_tokens; begin += step) {
    const int64_t count = std::min(step, num_tokens - begin);
    builder.AddSequence(std::span<const int32_t>(prompt).subspan(begin, count), begin, block_table,
                        LogitsWanted::kAll);
    RETURN_IF_ERROR(model->Forward(builder.Build(), *cache, logits));
    out.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(out_path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string model_dir, prompt_ids, out;
  int64_t chunk_size = 0;
  int64_t block_size = 16;
  iquest::BackendOptions backend_options;
  iquest::FlagParser flags("iquest-logits",
                           "Writes f32 logits [num_prompt_tokens, vocab] of a prompt to --out.");
  flags.AddString("model", &model_dir, "HF checkpoint folder or a .gguf file");
  flags.AddString("prompt-ids", &prompt_ids, "comma-separated prompt token ids");
  flags.AddString("out", &out, "output file (raw little-endian f32)");
  flags.AddInt("chunk", &chunk_size, "prefill chunk size in tokens; 0 = one chunk", 0, 1 << 20);
  flags.AddInt("block-size", &block_size, "KV cache block size in tokens", 1, 1024);
  iquest::RegisterBackendFlags(flags, &backend_options);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (model_dir.empty() || out.empty()) {
    std::fprintf(stderr, "error: --model and --out are required\n");
    return 2;
  }
  const absl::Status status =
      iquest::Run(model_dir, prompt_ids, chunk_size, block_size, out, backend_options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
