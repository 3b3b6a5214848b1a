// DraftProposer: a small model of the same vocabulary guesses the drafts, greedily, k tokens in
// k forward passes batched over the decoding requests. It keeps its own paged KV pool and
// BlockManager (the same rules: prefix caching, exact tables) and, per target request, a shadow
// Request: the tokens it has seen and how many of them have draft K/V.
//
// Sync, not messages: before proposing, a shadow's tokens are compared with its request's; the
// draft K/V past their common prefix (rejected drafts) is dropped, and the tokens the draft has
// not seen yet (the accepted drafts' successors, or the whole prompt of a new request) are its
// first chunk. So acceptance, preemption and forks need no notice; only Forget does.
//
// Greedy drafts are a point-mass proposal, which the target's verification (model_runner.h)
// turns into exactly the target's distribution.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/speculation/proposer.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "scheduler/block_manager.h"
#include "scheduler/scheduler.h"

namespace iquest {

class DraftProposer : public Proposer {
 public:
  // kInvalidArgument when `draft` cannot propose for `target`: another vocabulary size or other
  // EOS ids, or a shorter context than scheduler.max_model_len. `draft` must outlive the
  // proposer; its cache takes kv.num_blocks blocks of kv.block_size tokens.
  static absl::StatusOr<std::unique_ptr<DraftProposer>> Create(const LlamaModel& target,
                                                               LlamaModel& draft,
                                                               const KvCacheConfig& kv,
                                                               const SchedulerConfig& scheduler);

  absl::StatusOr<std::vector<std::vector<int32_t>>> Propose(
      std::span<const DraftQuery> queries) override;
  void Forget(uint64_t id) override;
  int64_t num_used_blocks() const override { return blocks_.num_used_blocks(); }

  const BlockManager& block_manager() const { return blocks_; }
  size_t num_tracked() const { return shadows_.size(); }
  // Checks the draft pool's accounting against the shadows (for tests).
  absl::Status CheckInvariants() const;

 private:
  DraftProposer(LlamaModel& draft, std::unique_ptr<KvCache> cache, const KvCacheConfig& kv,
                bool enable_prefix_caching);

  // Brings the shadow of `target` up to date and gives it blocks for `num_total_tokens`;
  // false (and the shadow dropped) when the pool cannot hold it even after evicting shadows
  // not in this round (`active`).
  bool Prepare(const Request& target, int64_t num_total_tokens,
               const std::unordered_map<uint64_t, bool>& active);
  // One draft forward over (shadow, chunk) pairs; the greedy next token of each.
  absl::StatusOr<std::vector<int32_t>> Step(const std::vector<Request*>& shadows,
                                            const std::vector<std::vector<int32_t>>& chunks);

  LlamaModel& draft_;
  std::unique_ptr<KvCache> cache_;
  BlockManager blocks_;
  int64_t block_size_;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> shadows_;  // By target request id.
  std::vector<SampleRow> rows_;
  std::vector<SampledId> ids_;
};

}  // namespace iquest
