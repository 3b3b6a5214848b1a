// BatchInputs: the flat per-step arrays the forward pass runs on, and BatchBuilder, which lays
// sequences' chunks out into them. A step mixes prefill chunks and decodes: every sequence
// contributes its next few tokens, whose K/V join the tokens already in the cache.
//
// BatchInputs lives in model/ (not engine/) because Model::Forward consumes it and the
// dependency points engine -> model.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace iquest {

struct BatchInputs {
  std::vector<int32_t> token_ids;        // [num_tokens]
  std::vector<int32_t> positions;        // [num_tokens]: index of each token in its sequence
  std::vector<int32_t> slot_mapping;     // [num_tokens]: block_id * block_size + offset
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1]: sequence s owns rows [qsl[s], qsl[s+1])
  std::vector<int32_t> seq_lens;         // [num_seqs]: context length after this step
  std::vector<int32_t> block_tables;     // [num_seqs, max_blocks_per_seq], padded with 0
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> logits_indices;  // Token rows whose logits Forward returns, in order.
  // Loop models with a local pool (KvCacheConfig::num_local_blocks): the local layers' tables,
  // [num_seqs, max_blocks_per_seq] (kNoBlock = -1 before a window), and the slots of this step's
  // tokens in them, [num_tokens]. Empty otherwise: the local layers then use the global tables.
  std::vector<int32_t> local_block_tables;
  std::vector<int32_t> local_slot_mapping;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(seq_lens.size()); }
};

enum class LogitsWanted { kNone, kLast, kAll };

class BatchBuilder {
 public:
  // `max_blocks_per_seq`: the widest block table the batch will have, when the caller knows it
  // (then rows are written once, at their final stride); a wider sequence widens the table.
  explicit BatchBuilder(int64_t block_size, int64_t max_blocks_per_seq = 1)
      : block_size_(block_size) {
    inputs_.max_blocks_per_seq = static_cast<int32_t>(std::max<int64_t>(max_blocks_per_seq, 1));
  }

  // Appends one sequence's chunk: `new_token_ids` follow `num_computed_tokens` tokens whose K/V
  // are already cached. `block_table` maps the sequence's logical blocks to physical ones and
  // must cover num_computed_tokens + new_token_ids.size() tokens.
  // `local_block_table`: the sequence's local table (Loop models with a local pool; then every
  // sequence of the batch has one), covering the same tokens, kNoBlock before the window.
  void AddSequence(std::span<const int32_t> new_token_ids, int64_t num_computed_tokens,
                   std::span<const int32_t> block_table, LogitsWanted logits,
                   std::span<const int32_t> local_block_table = {});

  // Returns the batch and resets the builder.
  BatchInputs Build();

 private:
  // Re-lays the rows written so far at a stride of `max_blocks` (> the current one).
  void Widen(int64_t max_blocks);

  int64_t block_size_;
  BatchInputs inputs_;
};

// Checks every index in `inputs` against the model and cache sizes, so that a malformed batch is
// an error rather than an out-of-bounds access.
absl::Status ValidateBatchInputs(const BatchInputs& inputs, int64_t vocab_size, int64_t num_blocks,
                                 int64_t block_size);
// The local arrays of a Loop model's batch against its local pool: sizes, every slot, and every
// table entry a query's `window`-token window reaches (entries before may be kNoBlock).
absl::Status ValidateLocalBatchInputs(const BatchInputs& inputs, int64_t num_local_blocks,
                                      int64_t block_size, int64_t window);

}  // namespace iquest
