// iquest-generate: the offline end-to-end path. Loads a checkpoint and greedily continues a
// list of token ids, printing the generated ids on one line separated by spaces.
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/llama.h"

namespace iquest {
namespace {

struct Options {
  std::string model_dir;
  std::string prompt_ids;
  int64_t max_tokens = 16;
  BackendOptions backend;
  int64_t block_size = 16;
  bool stop_at_eos = false;
};

int32_t ArgmaxRow(const float* row, int64_t vocab) {
  int64_t best = 0;
  for (int64_t v = 1; v < vocab; ++v) {
    if (row[v] > row[best]) best = v;
  }
  return static_cast<int32_t>(best);
}

absl::StatusOr<std::vector<int32_t>> Generate(const Options& options) {
  ASSIGN_OR_RETURN(auto backend, MakeBackend(Device::kCpu, options.backend));
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(options.model_dir, *backend));
  const ModelConfig& config = model->config();
  std::vector<int32_t> prompt;
  RETURN_IF_ERROR(ParseIntList(options.prompt_ids, 0, config.vocab_size - 1, &prompt));
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt-ids must not be empty");
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (total > config.max_context_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt.size(), ") + max tokens (", options.max_tokens,
                     ") exceeds the model's context of ", config.max_context_len));
  }
  // One sequence: blocks 0..n-1 in order.
  KvCacheConfig cache_config;
  cache_config.block_size = options.block_size;
  cache_config.num_blocks = (total + options.block_size - 1) / options.block_size;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(*backend, config, cache_config));
  std::vector<int32_t> block_table(static_cast<size_t>(cache_config.num_blocks));
  std::iota(block_table.begin(), block_table.end(), 0);

  std::vector<int32_t> generated;
  std::vector<int32_t> pending = prompt;  // Tokens whose K/V are not yet cached.
  int64_t num_computed = 0;
  std::vector<float> logits;
  BatchBuilder builder(options.block_size);
  while (static_cast<int64_t>(generated.size()) < options.max_tokens) {
    builder.AddSequence(pending, num_computed, block_table, LogitsWanted::kLast);
    RETURN_IF_ERROR(model->Forward(builder.Build(), *cache, logits));
    num_computed += static_cast<int64_t>(pending.size());
    const int32_t token = ArgmaxRow(logits.data(), config.vocab_size);
    generated.push_back(token);
    const bool is_eos = std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(),
                                  token) != config.eos_token_ids.end();
    if (options.stop_at_eos && is_eos) break;
    pending = {token};
  }
  return generated;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  iquest::Options options;
  iquest::FlagParser flags("iquest-generate",
                           "Greedily continues --prompt-ids with the model in --model and prints "
                           "the generated token ids on one line.");
  flags.AddString("model", &options.model_dir,
                  "HF checkpoint folder (config.json + safetensors) or a .gguf file");
  flags.AddString("prompt-ids", &options.prompt_ids, "comma-separated prompt token ids");
  flags.AddInt("max-tokens", &options.max_tokens, "tokens to generate", 1, 1 << 20);
  flags.AddInt("block-size", &options.block_size, "KV cache block size in tokens", 1, 1024);
  flags.AddBool("stop-at-eos", &options.stop_at_eos, "stop after an EOS token");
  RegisterBackendFlags(flags, &options.backend);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty()) {
    std::fprintf(stderr, "error: --model is required\n");
    return 2;
  }
  auto generated = iquest::Generate(options);
  if (!generated.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(generated.status().message()).c_str());
    return 1;
  }
  for (size_t i = 0; i < generated->size(); ++i) {
    std::printf(i == 0 ? "%d" : " %d", (*generated)[i]);
  }
  std::printf("\n");
  return 0;
}
