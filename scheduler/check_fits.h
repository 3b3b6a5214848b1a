// CheckFits: can this request ever run? The one owner of the checks that depend on the model and
// the KV pool rather than on a field's own range: a non-empty prompt, token ids inside the
// vocabulary, prompt + max_tokens inside the context, and the whole request inside the KV pool.
// Engine::Submit calls it before queueing (so a client hears at once) and Scheduler::AddRequest
// again (so the scheduler's invariants never rest on a caller). The server checks fields only.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace iquest {

struct FitLimits {
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;  // Prompt + output tokens of one request.
  int64_t num_blocks = 0;     // KV pool size, in blocks of block_size tokens.
  int64_t block_size = 0;
};

// kInvalidArgument naming the prompt or max_tokens and the limit, for a request no engine of this
// shape could run; kOutOfRange when it fits the context but never the KV pool (a larger
// --kv-cache-mb would take it; retrying cannot).
absl::Status CheckFits(std::span<const int32_t> prompt_token_ids, int64_t max_tokens,
                       const FitLimits& limits);

}  // namespace iquest
