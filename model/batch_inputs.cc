#include "model/batch_inputs.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace iquest {

void BatchBuilder::AddSequence(std::span<const int32_t> new_token_ids, int64_t num_computed_tokens,
                               std::span<const int32_t> block_table, LogitsWanted logits,
                               std::span<const int32_t> local_block_table) {
  const int64_t num_new = static_cast<int64_t>(new_token_ids.size());
  const int64_t seq_len = num_computed_tokens + num_new;
  const bool local = !local_block_table.empty();
  CHECK_GE(num_computed_tokens, 0);
  CHECK_LE(seq_len, static_cast<int64_t>(block_table.size()) * block_size_)
      << "block table too short";
  CHECK(inputs_.seq_lens.empty() || local == !inputs_.local_block_tables.empty())
      << "every sequence of a batch has a local table, or none";
  CHECK(!local || seq_len <= static_cast<int64_t>(local_block_table.size()) * block_size_)
      << "local block table too short";
  if (inputs_.query_start_loc.empty()) inputs_.query_start_loc.push_back(0);
  for (int64_t i = 0; i < num_new; ++i) {
    const int64_t position = num_computed_tokens + i;
    const int64_t row = inputs_.num_tokens();
    inputs_.token_ids.push_back(new_token_ids[i]);
    inputs_.positions.push_back(static_cast<int32_t>(position));
    const int64_t block = block_table[position / block_size_];
    inputs_.slot_mapping.push_back(
        static_cast<int32_t>(block * block_size_ + position % block_size_));
    if (local) {
      const int64_t local_block = local_block_table[position / block_size_];
      CHECK_GE(local_block, 0) << "a new token's local block was given back";
      inputs_.local_slot_mapping.push_back(
          static_cast<int32_t>(local_block * block_size_ + position % block_size_));
    }
    if (logits == LogitsWanted::kAll || (logits == LogitsWanted::kLast && i == num_new - 1)) {
      inputs_.logits_indices.push_back(static_cast<int32_t>(row));
    }
  }
  inputs_.query_start_loc.push_back(static_cast<int32_t>(inputs_.num_tokens()));
  inputs_.seq_lens.push_back(static_cast<int32_t>(seq_len));
  // Only the blocks this step can touch are passed to the kernels; the row is padded with 0.
  const int64_t num_blocks_used = (seq_len + block_size_ - 1) / block_size_;
  if (num_blocks_used > inputs_.max_blocks_per_seq) Widen(num_blocks_used);
  const size_t row = inputs_.block_tables.size();
  inputs_.block_tables.resize(row + static_cast<size_t>(inputs_.max_blocks_per_seq), 0);
  std::copy_n(block_table.begin(), num_blocks_used, inputs_.block_tables.begin() + row);
  if (local) {
    inputs_.local_block_tables.resize(row + static_cast<size_t>(inputs_.max_blocks_per_seq), 0);
    std::copy_n(local_block_table.begin(), num_blocks_used,
                inputs_.local_block_tables.begin() + row);
  }
}

void BatchBuilder::Widen(int64_t max_blocks) {
  const size_t old_stride = static_cast<size_t>(inputs_.max_blocks_per_seq);
  const size_t new_stride = static_cast<size_t>(max_blocks);
  for (std::vector<int32_t>* table : {&inputs_.block_tables, &inputs_.local_block_tables}) {
    const size_t num_rows = table->size() / old_stride;
    table->resize(num_rows * new_stride, 0);
    // From the last row back, so that no row is overwritten before it has moved.
    for (size_t r = num_rows; r-- > 0;) {
      std::copy_backward(table->begin() + r * old_stride, table->begin() + (r + 1) * old_stride,
                         table->begin() + r * new_stride + old_stride);
      std::fill(table->begin() + r * new_stride + old_stride, table->begin() + (r + 1) * new_stride,
                0);
    }
  }
  inputs_.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
}

BatchInputs BatchBuilder::Build() {
  if (inputs_.query_start_loc.empty()) inputs_.query_start_loc.push_back(0);
  // An empty batch still has a one-column table (ValidateBatchInputs wants >= 1).
  BatchInputs out = std::move(inputs_);
  inputs_ = BatchInputs();
  inputs_.max_blocks_per_seq = 1;
  return out;
}

absl::Status ValidateBatchInputs(const BatchInputs& in, int64_t vocab_size, int64_t num_blocks,
                                 int64_t block_size) {
  const int64_t num_tokens = in.num_tokens();
  const int64_t num_seqs = in.num_seqs();
  auto fail = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (in.positions.size() != in.token_ids.size() || in.slot_mapping.size() != in.token_ids.size()) {
    return fail("positions and slot_mapping must have one entry per token");
  }
  if (static_cast<int64_t>(in.query_start_loc.size()) != num_seqs + 1 ||
      in.query_start_loc.front() != 0 || in.query_start_loc.back() != num_tokens) {
    return fail("query_start_loc must run from 0 to num_tokens over num_seqs + 1 entries");
  }
  if (in.max_blocks_per_seq < 1 ||
      static_cast<int64_t>(in.block_tables.size()) != num_seqs * in.max_blocks_per_seq) {
    return fail("block_tables must be num_seqs x max_blocks_per_seq");
  }
  for (int32_t id : in.token_ids) {
    if (id < 0 || id >= vocab_size) return fail("token id ", id, " outside [0, ", vocab_size, ")");
  }
  for (int32_t slot : in.slot_mapping) {
    if (slot < 0 || slot >= num_blocks * block_size) return fail("slot ", slot, " out of range");
  }
  for (int32_t block : in.block_tables) {
    if (block < 0 || block >= num_blocks) return fail("block ", block, " out of range");
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t num_queries = in.query_start_loc[s + 1] - in.query_start_loc[s];
    if (num_queries < 0 || num_queries > in.seq_lens[s] ||
        in.seq_lens[s] > int64_t{in.max_blocks_per_seq} * block_size) {
      return fail("sequence ", s, ": bad query count or seq_len");
    }
  }
  for (int32_t row : in.logits_indices) {
    if (row < 0 || row >= num_tokens) return fail("logits index ", row, " out of range");
  }
  return absl::OkStatus();
}

absl::Status ValidateLocalBatchInputs(const BatchInputs& in, int64_t num_local_blocks,
                                      int64_t block_size, int64_t window) {
  auto fail = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (in.local_slot_mapping.size() != in.token_ids.size() ||
      in.local_block_tables.size() != in.block_tables.size()) {
    return fail("local_slot_mapping and local_block_tables must match the global arrays");
  }
  for (int32_t slot : in.local_slot_mapping) {
    if (slot < 0 || slot >= num_local_blocks * block_size) {
      return fail("local slot ", slot, " out of range");
    }
  }
  for (int64_t s = 0; s < in.num_seqs(); ++s) {
    const int64_t num_queries = in.query_start_loc[s + 1] - in.query_start_loc[s];
    const int64_t first = std::max<int64_t>(0, in.seq_lens[s] - num_queries - window + 1);
    for (int64_t b = 0; b < in.max_blocks_per_seq; ++b) {
      const int32_t block =
          in.local_block_tables[static_cast<size_t>(s * in.max_blocks_per_seq + b)];
      const bool reached = (b + 1) * block_size > first && b * block_size < in.seq_lens[s];
      if (block == -1 && !reached) continue;
      if (block < 0 || block >= num_local_blocks) {
        return fail("sequence ", s, ": local block ", block, " out of range");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace iquest
