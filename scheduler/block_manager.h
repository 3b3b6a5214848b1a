// BlockManager: bookkeeping of the paged KV cache's fixed-size blocks — a free queue in eviction
// order, reference counts, automatic prefix caching and copy-on-write. It never touches KV memory;
// copies it decides on are returned for the model runner to perform.
//
// Every block is in exactly one state: used (ref_count > 0), cached (ref_count == 0, holds a
// prefix-cache key, reusable until evicted) or free (ref_count == 0, no key). Cached and free
// blocks both sit in the free queue, least recently released first; allocation takes the front and
// evicts its key, if any. So used + cached + free == num_blocks, always.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "common/sha256.h"
#include "scheduler/kv_events.h"
#include "scheduler/request.h"

namespace iquest {

// A block-table entry that names no block: the blocks of a sliding-window table wholly before
// the window are given back (ReleaseBefore) and leave this behind.
inline constexpr int32_t kNoBlock = -1;

struct BlockCopy {
  int32_t src_block;
  int32_t dst_block;
};

class BlockManager {
 public:
  // `table`: the Request member holding the tables this manager keeps (block_ids, or
  // local_block_ids for a Loop model's windowed layers).
  BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching,
               std::vector<int32_t> Request::*table = &Request::block_ids);

  // The longest run of `request`'s full blocks already in the prefix cache. At least one token is
  // always left to compute, so the step that finishes the prompt yields logits.
  struct CachedPrefix {
    std::vector<int32_t> block_ids;
    int64_t num_tokens = 0;
  };
  CachedPrefix FindCachedPrefix(Request& request);

  // Blocks that Allocate(request, num_total_tokens, prefix) would take from the free queue.
  int64_t NumBlocksToAllocate(const Request& request, int64_t num_total_tokens,
                              const CachedPrefix* prefix = nullptr) const;

  // Grows `request`'s block table to hold `num_total_tokens` tokens: first the `prefix` blocks
  // (when the table is empty), then fresh ones. Returns false and changes nothing if the free
  // queue is too short.
  bool Allocate(Request& request, int64_t num_total_tokens, const CachedPrefix* prefix = nullptr);

  // Gives `request`'s full, computed blocks prefix-cache keys so later requests can reuse them.
  void CacheFullBlocks(Request& request);

  // Drops `request`'s references, tail block first so that tails are evicted before heads.
  void Free(Request& request);
  // Drops the blocks past those `num_tokens` tokens need (speculative decoding: the slots of
  // rejected drafts). They hold no verified token, so none has a key; they are reused first.
  void Truncate(Request& request, int64_t num_tokens);

  // Sliding-window tables: gives back the blocks wholly before `position` (no query will read
  // them again); their entries become kNoBlock, keyed ones stay in the prefix cache. The
  // kNoBlock entries of a table are always a prefix of it.
  void ReleaseBefore(Request& request, int64_t position);
  // Sliding-window tables: the cached blocks a request whose first `num_tokens` (a multiple of
  // block_size) tokens are found elsewhere needs to go on with a `window`-token window: those
  // holding positions [num_tokens - window + 1, num_tokens), kNoBlock before them. nullopt if
  // one of them is not cached.
  std::optional<CachedPrefix> FindCachedWindow(Request& request, int64_t num_tokens,
                                               int64_t window);

  // n > 1: `child` shares all of `parent`'s blocks.
  void Fork(const Request& parent, Request& child);

  // Whether writing the token at `position` would change a block another request shares.
  bool NeedsCopy(const Request& request, int64_t position) const;
  // Swaps that shared block for a private copy and returns the copy to perform. Needs one
  // allocatable block (callers check num_free_blocks()).
  BlockCopy CopyOnWrite(Request& request, int64_t position);

  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t num_free_blocks() const { return free_count_; }  // Free + cached: allocatable.
  int64_t num_cached_blocks() const { return cached_free_count_; }
  int64_t num_used_blocks() const { return num_blocks() - free_count_; }
  // Free-queue order, front (next to allocate) first. For tests.
  std::vector<int32_t> FreeQueue() const;

  // KV-cache events (kv_events.h), recorded only when enabled; TakeKvEvents hands them over in
  // order. Off by default: no cost for a server without --kv-events-endpoint.
  void set_record_kv_events(bool on) { record_kv_events_ = on; }
  std::vector<KvCacheEvent> TakeKvEvents();
  // Forgets every key (an AllBlocksCleared event); FAILED_PRECONDITION if a block is used.
  absl::Status ResetPrefixCache();
  // The external hashes of all keyed blocks (used or cached), for tests against a replay.
  std::vector<uint64_t> KeyedBlockHashes() const;

  // Recounts everything against the block tables of the `live` requests.
  absl::Status CheckInvariants(const std::vector<const Request*>& live) const;

 private:
  struct Block {
    int32_t ref_count = 0;
    std::optional<Sha256Digest> hash;
    int32_t prev = -1;  // Free-queue links; -1 ends the list.
    int32_t next = -1;
    bool in_free_queue = false;
  };
  struct DigestHasher {
    size_t operator()(const Sha256Digest& d) const;
  };

  void PushBack(int32_t block);
  void PushFront(int32_t block);
  void Remove(int32_t block);
  int32_t PopFront();
  void Reference(int32_t block);
  Sha256Digest HashBlock(const Request& request, int64_t block_index) const;
  std::vector<int32_t>& Table(Request& request) const { return request.*table_; }
  const std::vector<int32_t>& Table(const Request& request) const { return request.*table_; }

  int64_t block_size_;
  bool enable_prefix_caching_;
  std::vector<int32_t> Request::*table_;
  std::vector<Block> blocks_;
  int32_t head_ = -1;
  int32_t tail_ = -1;
  int64_t free_count_ = 0;
  std::unordered_map<Sha256Digest, int32_t, DigestHasher> cache_;
  int64_t cached_free_count_ = 0;  // Keyed blocks in the free queue.
  bool record_kv_events_ = false;
  std::vector<KvCacheEvent> kv_events_;
};

}  // namespace iquest
