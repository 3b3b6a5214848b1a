#include "tools/eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/kv_cache.h"
#include "tools/eval/bits_per_byte.h"

namespace iquest {
namespace {

constexpr int64_t kBlockSize = 16;

}  // namespace

absl::StatusOr<Perplexity> LlamaCppPerplexity(LlamaModel& model, std::vector<int32_t> tokens,
                                              const PerplexityOptions& options) {
  const ModelConfig& config = model.config();
  const int64_t n_ctx = options.context;
  if (n_ctx < 4 || n_ctx > config.max_context_len) {
    return absl::InvalidArgumentError(absl::StrCat("--ctx ", n_ctx, " is outside [4, ",
                                                   config.max_context_len, "] for this model"));
  }
  const int64_t num_tokens = static_cast<int64_t>(tokens.size());
  if (num_tokens < 2 * n_ctx) {
    return absl::InvalidArgumentError(
        absl::StrCat("the text tokenizes to ", num_tokens, " tokens; a context of ", n_ctx,
                     " needs at least ", 2 * n_ctx, " (as llama-perplexity)"));
  }
  int64_t num_chunks = num_tokens / n_ctx;
  if (options.max_chunks >= 0) num_chunks = std::min(num_chunks, options.max_chunks);
  const int64_t batch = options.batch > 0 ? std::min(options.batch, n_ctx) : n_ctx;

  KvCacheConfig cache_config;
  cache_config.block_size = kBlockSize;
  cache_config.num_blocks = (n_ctx + kBlockSize - 1) / kBlockSize;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(model.backend(), config, cache_config));
  std::vector<int32_t> block_table(static_cast<size_t>(cache_config.num_blocks));
  std::iota(block_table.begin(), block_table.end(), 0);

  const int64_t first = n_ctx / 2;
  const int64_t vocab = config.vocab_size;
  Perplexity result;
  double nll = 0, nll2 = 0;
  BatchBuilder builder(kBlockSize);
  std::vector<float> logits;
  // Rows [first, n_ctx) of a chunk: the scored ones (and the last, which predicts past it).
  std::vector<float> chunk_logits(static_cast<size_t>((n_ctx - first) * vocab));
  for (int64_t c = 0; c < num_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (options.bos_id >= 0) chunk[0] = options.bos_id;
    // A fresh context per chunk: positions from 0 over the same blocks, each pass overwriting
    // the previous chunk's KV.
    for (int64_t begin = 0; begin < n_ctx; begin += batch) {
      const int64_t count = std::min(batch, n_ctx - begin);
      builder.AddSequence(std::span<const int32_t>(chunk).subspan(begin, count), begin, block_table,
                          LogitsWanted::kAll);
      RETURN_IF_ERROR(model.Forward(builder.Build(), *cache, logits));
      for (int64_t row = std::max(begin, first); row < begin + count; ++row) {
        std::copy_n(logits.begin() + (row - begin) * vocab, vocab,
                    chunk_logits.begin() + (row - first) * vocab);
      }
    }
    for (int64_t j = first; j + 1 < n_ctx; ++j) {
      const double v = NegLogProb(chunk_logits.data() + (j - first) * vocab, vocab, chunk[j + 1]);
      nll += v;
      nll2 += v * v;
    }
    result.scored_tokens += n_ctx - 1 - first;
    result.running_ppl.push_back(std::exp(nll / static_cast<double>(result.scored_tokens)));
  }
  const double count = static_cast<double>(result.scored_tokens);
  const double mean = nll / count;
  const double variance = nll2 / count - mean * mean;
  result.ppl = std::exp(mean);
  result.uncertainty =
      variance > 0 && count > 1 ? std::sqrt(variance / (count - 1)) * result.ppl : 0;
  return result;
}

}  // namespace iquest
