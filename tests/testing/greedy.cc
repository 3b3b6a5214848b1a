#include "tests/testing/greedy.h"

#include <algorithm>
#include <numeric>

#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "tools/tiny_model.h"

namespace iquest::testing {

std::vector<int32_t> Greedy(const std::string& dir, Backend& backend, std::vector<int32_t> prompt,
                            int num_tokens, DType kv_dtype) {
  auto model = LlamaModel::Load(dir, backend);
  CHECK(model.ok()) << model.status();
  const int64_t block_size = 16;
  const int64_t total = static_cast<int64_t>(prompt.size()) + num_tokens;
  KvCacheConfig cache_config{(total + block_size - 1) / block_size, block_size, kv_dtype};
  auto cache = KvCache::Create(backend, (*model)->config(), cache_config);
  CHECK(cache.ok()) << cache.status();
  std::vector<int32_t> table(static_cast<size_t>(cache_config.num_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<int32_t> out;
  std::vector<int32_t> pending = std::move(prompt);
  int64_t computed = 0;
  std::vector<float> logits;
  const int64_t vocab = (*model)->config().vocab_size;
  for (int i = 0; i < num_tokens; ++i) {
    BatchBuilder builder(block_size);
    builder.AddSequence(pending, computed, table, LogitsWanted::kLast);
    CHECK((*model)->Forward(builder.Build(), **cache, logits).ok());
    computed += static_cast<int64_t>(pending.size());
    const int32_t next = static_cast<int32_t>(
        std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
    out.push_back(next);
    pending = {next};
  }
  return out;
}

absl::Status WriteParityModel(const std::string& dir, const std::string& arch,
                              const std::string& dtype) {
  TinyModelOptions options;
  options.arch = arch;
  options.dtype = dtype;
  options.hidden_size = 128;
  options.num_heads = 8;
  options.num_kv_heads = 2;
  options.intermediate_size = 344;
  options.vocab_size = 1000;
  options.tie_word_embeddings = arch == "llama";
  // Windows shorter than the 20-token prompt, so that decoding runs past them.
  if (arch == "mistral") options.sliding_window = 8;
  if (arch == "loop") options.loop_window = 8;  // Gate biases 0: both branches count.
  return WriteTinyModel(dir, options);
}

std::vector<int32_t> ParityPrompt() {
  std::vector<int32_t> prompt(20);
  for (int i = 0; i < 20; ++i) prompt[i] = (i * 37 + 11) % 1000;
  return prompt;
}

}  // namespace iquest::testing
