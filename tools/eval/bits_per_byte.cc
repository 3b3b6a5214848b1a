#include "tools/eval/bits_per_byte.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"
#include "model/kv_cache.h"

namespace iquest {
namespace {

constexpr int64_t kBlockSize = 16;

struct PendingWindow {
  const std::vector<int32_t>* tokens;
  TokenWindow window;
};

}  // namespace

double NegLogProb(const float* row, int64_t vocab, int32_t target) {
  const float max = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return -(static_cast<double>(row[target]) - max - std::log(sum));
}

std::vector<TokenWindow> ScoringWindows(int64_t num_tokens, int64_t context) {
  CHECK_GE(context, 2);
  std::vector<TokenWindow> windows;
  for (int64_t begin = 0; begin + 1 < num_tokens; begin += context - 1) {
    windows.push_back({begin, std::min(context, num_tokens - begin)});
  }
  return windows;
}

absl::StatusOr<BitsPerByte> HeldOutBitsPerByte(LlamaModel& model, const Tokenizer& tokenizer,
                                               const std::vector<std::string>& texts,
                                               int64_t context, int64_t windows_per_step) {
  const ModelConfig& config = model.config();
  if (tokenizer.bos_id() < 0 || tokenizer.eos_ids().empty()) {
    return absl::FailedPreconditionError("the tokenizer needs a BOS and an EOS token");
  }
  if (context < 2 || context > config.max_context_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("context ", context, " is outside [2, ", config.max_context_len, "]"));
  }
  BitsPerByte result;
  std::vector<std::vector<int32_t>> framed;
  for (const std::string& text : texts) {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                     tokenizer.Encode(text, /*add_special_tokens=*/false));
    ids.insert(ids.begin(), tokenizer.bos_id());
    ids.push_back(tokenizer.eos_ids().front());
    framed.push_back(std::move(ids));
    result.bytes += static_cast<int64_t>(text.size());
  }
  std::vector<PendingWindow> pending;
  for (const std::vector<int32_t>& tokens : framed) {
    for (const TokenWindow& window : ScoringWindows(static_cast<int64_t>(tokens.size()), context)) {
      pending.push_back({&tokens, window});
    }
  }

  // Every window of a step gets its own blocks; a window always starts at position 0.
  const int64_t blocks_per_window = (context + kBlockSize - 1) / kBlockSize;
  KvCacheConfig cache_config;
  cache_config.block_size = kBlockSize;
  cache_config.num_blocks = blocks_per_window * windows_per_step;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(model.backend(), config, cache_config));
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(windows_per_step));
  for (int64_t slot = 0; slot < windows_per_step; ++slot) {
    tables[slot].resize(static_cast<size_t>(blocks_per_window));
    std::iota(tables[slot].begin(), tables[slot].end(),
              static_cast<int32_t>(slot * blocks_per_window));
  }
  BatchBuilder builder(kBlockSize);
  std::vector<float> logits;
  const int64_t vocab = config.vocab_size;
  for (size_t first = 0; first < pending.size(); first += windows_per_step) {
    const size_t last = std::min(pending.size(), first + windows_per_step);
    for (size_t i = first; i < last; ++i) {
      const auto& [tokens, window] = pending[i];
      builder.AddSequence(std::span<const int32_t>(*tokens).subspan(window.begin, window.size), 0,
                          tables[i - first], LogitsWanted::kAll);
    }
    RETURN_IF_ERROR(model.Forward(builder.Build(), *cache, logits));
    // Rows come in batch order: each window's `size` rows, of which all but the last predict.
    const float* row = logits.data();
    for (size_t i = first; i < last; ++i) {
      const auto& [tokens, window] = pending[i];
      for (int64_t j = 0; j + 1 < window.size; ++j) {
        result.bits += NegLogProb(row, vocab, (*tokens)[window.begin + j + 1]) / std::numbers::ln2;
        row += vocab;
      }
      row += vocab;  // The last position predicts past the window.
      result.scored_tokens += window.size - 1;
    }
    CHECK_EQ(row, logits.data() + logits.size());
  }
  return result;
}

}  // namespace iquest
