// KvBlocks: the scheduler's view of the KV blocks. Every model has the global pool (all layers of
// a Llama-family model, pass 1 of a Loop model; Request::block_ids). A Loop model also has the
// local pool of its later passes' windowed layers (Request::local_block_ids), whose tables give
// back the blocks that fall wholly out of the window after each step, so that the local branch
// holds about window + chunk tokens per sequence however long the context grows. Its blocks are
// keyed like the global ones (same hash chain), and stay in the prefix cache when given back: a
// prefix hit needs the global blocks of the prefix and the local blocks of its last window (as
// vLLM's hybrid allocator does it), so cached prefixes give exactly the recomputed K/V.
//
// Every operation covers both pools: a request grows only when both have the blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "scheduler/block_manager.h"
#include "scheduler/request.h"

namespace iquest {

class KvBlocks {
 public:
  // The smallest local pool in which one request alone always progresses: its window before a
  // step's chunk of `max_num_batched_tokens`, and a partial block on either side.
  static int64_t MinLocalBlocks(int64_t local_window, int64_t block_size,
                                int64_t max_num_batched_tokens) {
    return (local_window - 1 + max_num_batched_tokens + block_size - 1) / block_size + 1;
  }

  // local_window 0: the global pool only (num_local_blocks ignored).
  KvBlocks(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching,
           int64_t local_window = 0, int64_t num_local_blocks = 0);

  struct Prefix {
    BlockManager::CachedPrefix global, local;
    int64_t num_tokens = 0;
  };
  // The longest cached prefix both pools can give (see above).
  Prefix FindCachedPrefix(Request& request);

  // Whether Grow(request, num_total_tokens, prefix) would find its blocks: the blocks to reach
  // num_total_tokens (after `prefix`, for a request holding none) and, where the block written
  // next (at num_computed_tokens) is shared, its copy-on-write copy, in both pools.
  bool Fits(const Request& request, int64_t num_total_tokens, const Prefix* prefix = nullptr) const;
  // Copy-on-write of the shared block written next (the copies to perform are appended), then
  // blocks up to num_total_tokens. CHECKs that Fits.
  void Grow(Request& request, int64_t num_total_tokens, const Prefix* prefix,
            std::vector<BlockCopy>& copies, std::vector<BlockCopy>& local_copies);
  // Slots past the first `num_tokens` tokens that the request's blocks and the free ones hold,
  // in the tighter pool (speculative drafts: they never preempt).
  int64_t SlotsPast(const Request& request, int64_t num_tokens) const;

  // After a step: full computed blocks get their keys; the local table gives back what the
  // next query's window no longer reaches.
  void AfterStep(Request& request);
  void Free(Request& request);
  void Truncate(Request& request, int64_t num_tokens);
  void Fork(const Request& parent, Request& child);

  absl::Status ResetPrefixCache();
  absl::Status CheckInvariants(const std::vector<const Request*>& live) const;

  BlockManager& global() { return global_; }
  const BlockManager& global() const { return global_; }
  // Null without a local pool.
  const BlockManager* local() const { return local_.get(); }
  int64_t local_window() const { return local_window_; }
  // The most local blocks in use at once (right after a Grow, before a step's AfterStep gives
  // the window's tail back), since construction.
  int64_t max_local_used() const { return max_local_used_; }
  int64_t block_size() const { return global_.block_size(); }

 private:
  BlockManager global_;
  std::unique_ptr<BlockManager> local_;
  int64_t local_window_ = 0;
  int64_t max_local_used_ = 0;
};

}  // namespace iquest
