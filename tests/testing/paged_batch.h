// A flat attention batch over a paged cache, laid out for kernel tests: each sequence gets its
// blocks from a shuffled pool (so that logical and physical order differ), and the arrays
// AttentionArgs points at.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace iquest::testing {

struct PagedBatch {
  int64_t num_blocks = 0;  // The pool: every block some sequence uses, plus `spare_blocks`.
  int64_t max_blocks = 0;  // Columns of block_tables.
  std::vector<int32_t> block_tables;     // [num_seqs, max_blocks]
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1]
  std::vector<int32_t> seq_lens;         // [num_seqs]
  int64_t num_seqs() const { return static_cast<int64_t>(seq_lens.size()); }
  int64_t num_tokens() const { return query_start_loc.back(); }
};

// seqs: (context length after this step, new tokens) per sequence.
inline PagedBatch LayOutPagedBatch(const std::vector<std::pair<int, int>>& seqs, int block_size,
                                   int spare_blocks, uint32_t seed) {
  PagedBatch batch;
  int64_t used = 0;
  for (const auto& [len, num_new] : seqs) {
    const int64_t blocks = (len + block_size - 1) / block_size;
    used += blocks;
    batch.max_blocks = std::max(batch.max_blocks, blocks);
  }
  batch.num_blocks = used + spare_blocks;
  std::vector<int32_t> pool(static_cast<size_t>(batch.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(seed));
  batch.block_tables.assign(seqs.size() * static_cast<size_t>(batch.max_blocks), 0);
  batch.query_start_loc = {0};
  size_t next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int b = 0; b < (seqs[s].first + block_size - 1) / block_size; ++b) {
      batch.block_tables[s * static_cast<size_t>(batch.max_blocks) + static_cast<size_t>(b)] =
          pool[next++];
    }
    batch.seq_lens.push_back(seqs[s].first);
    batch.query_start_loc.push_back(batch.query_start_loc.back() + seqs[s].second);
  }
  return batch;
}

// A sliding window of `window` tokens reads no block wholly before the window of a sequence's
// first query row: those table entries become -1 (no block), which a kernel that read them
// would CHECK-fail on.
inline void ForgetBlocksBeforeWindows(PagedBatch& batch, int block_size, int window) {
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    const int num_queries = batch.query_start_loc[s + 1] - batch.query_start_loc[s];
    const int first_pos = batch.seq_lens[s] - num_queries;
    const int start = std::max(0, first_pos - window + 1);
    for (int b = 0; b < start / block_size; ++b) {
      batch.block_tables[static_cast<size_t>(s * batch.max_blocks + b)] = -1;
    }
  }
}

}  // namespace iquest::testing
