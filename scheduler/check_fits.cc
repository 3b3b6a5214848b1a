#include "scheduler/check_fits.h"

#include "absl/strings/str_cat.h"

namespace iquest {

absl::Status CheckFits(std::span<const int32_t> prompt_token_ids, int64_t max_tokens,
                       const FitLimits& limits) {
  const int64_t prompt_len = static_cast<int64_t>(prompt_token_ids.size());
  if (prompt_len == 0) return absl::InvalidArgumentError("prompt: must be non-empty");
  for (int64_t i = 0; i < prompt_len; ++i) {
    const int32_t id = prompt_token_ids[static_cast<size_t>(i)];
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", id, " at position ", i,
                                                     " is outside the vocabulary [0, ",
                                                     limits.vocab_size, ")"));
    }
  }
  const int64_t total = prompt_len + max_tokens;
  if (total > limits.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt_len, " tokens) + max_tokens (", max_tokens,
                     ") exceeds the maximum context length of ", limits.max_model_len, " tokens"));
  }
  const int64_t blocks_needed = (total + limits.block_size - 1) / limits.block_size;
  if (blocks_needed > limits.num_blocks) {
    // Permanent, unlike a full queue: no retry can help, so it is not RESOURCE_EXHAUSTED.
    return absl::OutOfRangeError(
        absl::StrCat("prompt (", prompt_len, " tokens) + max_tokens (", max_tokens, ") needs ",
                     blocks_needed, " KV blocks of ", limits.block_size,
                     " tokens, but the whole KV cache has ", limits.num_blocks));
  }
  return absl::OkStatus();
}

}  // namespace iquest
