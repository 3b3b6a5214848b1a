#include "scheduler/block_manager.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace iquest {

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching,
                           std::vector<int32_t> Request::*table)
    : block_size_(block_size),
      enable_prefix_caching_(enable_prefix_caching),
      table_(table),
      blocks_(static_cast<size_t>(num_blocks)) {
  CHECK_GT(num_blocks, 0);
  CHECK_GT(block_size, 0);
  for (int32_t b = 0; b < num_blocks; ++b) PushBack(b);
}

size_t BlockManager::DigestHasher::operator()(const Sha256Digest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof(h));  // SHA-256 bits are uniform; the map compares all 32 bytes.
  return h;
}

void BlockManager::PushBack(int32_t b) {
  Block& block = blocks_[b];
  CHECK(!block.in_free_queue && block.ref_count == 0) << "block " << b;
  block.prev = tail_;
  block.next = -1;
  if (tail_ >= 0) blocks_[tail_].next = b;
  tail_ = b;
  if (head_ < 0) head_ = b;
  block.in_free_queue = true;
  ++free_count_;
  if (block.hash) ++cached_free_count_;
}

void BlockManager::PushFront(int32_t b) {
  Block& block = blocks_[b];
  CHECK(!block.in_free_queue && block.ref_count == 0) << "block " << b;
  block.prev = -1;
  block.next = head_;
  if (head_ >= 0) blocks_[head_].prev = b;
  head_ = b;
  if (tail_ < 0) tail_ = b;
  block.in_free_queue = true;
  ++free_count_;
  if (block.hash) ++cached_free_count_;
}

void BlockManager::Remove(int32_t b) {
  Block& block = blocks_[b];
  CHECK(block.in_free_queue) << "block " << b;
  if (block.prev >= 0) blocks_[block.prev].next = block.next;
  if (block.next >= 0) blocks_[block.next].prev = block.prev;
  if (head_ == b) head_ = block.next;
  if (tail_ == b) tail_ = block.prev;
  block.prev = block.next = -1;
  block.in_free_queue = false;
  --free_count_;
  if (block.hash) --cached_free_count_;
}

int32_t BlockManager::PopFront() {
  CHECK_GE(head_, 0) << "free queue empty";
  const int32_t b = head_;
  Remove(b);
  Block& block = blocks_[b];
  if (block.hash) {  // Evict: its content is about to be overwritten.
    if (record_kv_events_) {
      KvCacheEvent event;
      event.kind = KvCacheEvent::Kind::kRemoved;
      event.block_hash = ExternalBlockHash(*block.hash);
      kv_events_.push_back(std::move(event));
    }
    cache_.erase(*block.hash);
    block.hash.reset();
  }
  return b;
}

void BlockManager::Reference(int32_t b) {
  if (blocks_[b].in_free_queue) Remove(b);
  ++blocks_[b].ref_count;
}

Sha256Digest BlockManager::HashBlock(const Request& request, int64_t block_index) const {
  // Key = SHA-256(parent key || token ids || cache_salt): a block matches only if its whole
  // prefix and the salt match.
  Sha256 hash;
  if (block_index > 0) {
    const Sha256Digest& parent = request.block_hashes[static_cast<size_t>(block_index - 1)];
    hash.Update(parent.data(), parent.size());
  }
  for (int64_t i = block_index * block_size_; i < (block_index + 1) * block_size_; ++i) {
    const int32_t token = request.token(i);
    hash.Update(&token, sizeof(token));
  }
  const uint64_t salt_size = request.cache_salt.size();
  hash.Update(&salt_size, sizeof(salt_size));
  hash.Update(request.cache_salt.data(), request.cache_salt.size());
  return hash.Finish();
}

BlockManager::CachedPrefix BlockManager::FindCachedPrefix(Request& request) {
  CachedPrefix prefix;
  if (!enable_prefix_caching_) return prefix;
  // Leave the last known token uncomputed: its logits give the next token. (A preempted request
  // re-prefills its output tokens too, so those count.)
  const int64_t max_blocks = (request.num_tokens() - 1) / block_size_;
  for (int64_t i = 0; i < max_blocks; ++i) {
    if (static_cast<int64_t>(request.block_hashes.size()) <= i) {
      request.block_hashes.push_back(HashBlock(request, i));
    }
    auto it = cache_.find(request.block_hashes[static_cast<size_t>(i)]);
    if (it == cache_.end()) break;
    prefix.block_ids.push_back(it->second);
  }
  prefix.num_tokens = static_cast<int64_t>(prefix.block_ids.size()) * block_size_;
  return prefix;
}

int64_t BlockManager::NumBlocksToAllocate(const Request& request, int64_t num_total_tokens,
                                          const CachedPrefix* prefix) const {
  const int64_t needed = (num_total_tokens + block_size_ - 1) / block_size_;
  int64_t have = static_cast<int64_t>(Table(request).size());
  int64_t from_free_queue = 0;
  if (prefix != nullptr && have == 0) {
    for (int32_t b : prefix->block_ids) {
      // A cached block leaves the queue.
      if (b != kNoBlock && blocks_[b].in_free_queue) ++from_free_queue;
    }
    have = static_cast<int64_t>(prefix->block_ids.size());
  }
  return from_free_queue + std::max<int64_t>(0, needed - have);
}

bool BlockManager::Allocate(Request& request, int64_t num_total_tokens,
                            const CachedPrefix* prefix) {
  if (NumBlocksToAllocate(request, num_total_tokens, prefix) > free_count_) return false;
  if (prefix != nullptr && Table(request).empty()) {
    for (int32_t b : prefix->block_ids) {
      if (b != kNoBlock) Reference(b);
      Table(request).push_back(b);
    }
  }
  const int64_t needed = (num_total_tokens + block_size_ - 1) / block_size_;
  while (static_cast<int64_t>(Table(request).size()) < needed) {
    const int32_t b = PopFront();
    blocks_[b].ref_count = 1;
    Table(request).push_back(b);
  }
  return true;
}

void BlockManager::CacheFullBlocks(Request& request) {
  if (!enable_prefix_caching_) return;
  const int64_t num_full = std::min<int64_t>(request.num_computed_tokens / block_size_,
                                             static_cast<int64_t>(Table(request).size()));
  for (int64_t i = 0; i < num_full; ++i) {
    if (static_cast<int64_t>(request.block_hashes.size()) <= i) {
      request.block_hashes.push_back(HashBlock(request, i));
    }
    if (Table(request)[static_cast<size_t>(i)] == kNoBlock) continue;  // Released, keyed before.
    Block& block = blocks_[Table(request)[static_cast<size_t>(i)]];
    if (block.hash) continue;
    const Sha256Digest& key = request.block_hashes[static_cast<size_t>(i)];
    // If another block already holds this content, keep that one; this one stays unkeyed.
    if (!cache_.emplace(key, Table(request)[static_cast<size_t>(i)]).second) continue;
    block.hash = key;
    if (record_kv_events_) {
      KvCacheEvent event;
      event.block_hash = ExternalBlockHash(key);
      if (i > 0) {
        event.parent_block_hash =
            ExternalBlockHash(request.block_hashes[static_cast<size_t>(i - 1)]);
      }
      const auto first = request.token_ids.begin() + i * block_size_;
      event.token_ids.assign(first, first + block_size_);
      kv_events_.push_back(std::move(event));
    }
  }
}

absl::Status BlockManager::ResetPrefixCache() {
  if (num_used_blocks() > 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot reset the prefix cache while ",
                                                      num_used_blocks(), " blocks are in use"));
  }
  for (Block& block : blocks_) block.hash.reset();
  cache_.clear();
  cached_free_count_ = 0;
  if (record_kv_events_) {
    KvCacheEvent event;
    event.kind = KvCacheEvent::Kind::kAllCleared;
    kv_events_.push_back(std::move(event));
  }
  return absl::OkStatus();
}

std::vector<KvCacheEvent> BlockManager::TakeKvEvents() {
  std::vector<KvCacheEvent> out = std::move(kv_events_);
  kv_events_.clear();
  return out;
}

std::vector<uint64_t> BlockManager::KeyedBlockHashes() const {
  std::vector<uint64_t> out;
  for (const auto& [digest, block] : cache_) out.push_back(ExternalBlockHash(digest));
  return out;
}

uint64_t ExternalBlockHash(const Sha256Digest& digest) {
  uint64_t h = 0;
  for (size_t i = 0; i < 8; ++i) h = (h << 8) | digest[i];
  return h & ~(uint64_t{1} << 63);
}

void BlockManager::Free(Request& request) {
  for (auto it = Table(request).rbegin(); it != Table(request).rend(); ++it) {
    if (*it == kNoBlock) continue;
    Block& block = blocks_[*it];
    CHECK_GT(block.ref_count, 0) << "block " << *it;
    if (--block.ref_count == 0) PushBack(*it);
  }
  Table(request).clear();
}

void BlockManager::Truncate(Request& request, int64_t num_tokens) {
  const size_t needed = static_cast<size_t>((num_tokens + block_size_ - 1) / block_size_);
  while (Table(request).size() > needed) {
    const int32_t b = Table(request).back();
    Table(request).pop_back();
    if (b == kNoBlock) continue;
    Block& block = blocks_[b];
    CHECK_GT(block.ref_count, 0) << "block " << b;
    if (--block.ref_count > 0) continue;
    if (block.hash) {
      PushBack(b);
    } else {
      PushFront(b);
    }
  }
}

void BlockManager::ReleaseBefore(Request& request, int64_t position) {
  std::vector<int32_t>& table = Table(request);
  const size_t end =
      std::min(table.size(), static_cast<size_t>(std::max<int64_t>(0, position) / block_size_));
  // kNoBlock entries are always a prefix of the table (releases, and cached windows, start at
  // the front): find where the held blocks start instead of scanning the whole context.
  size_t start = end;
  while (start > 0 && table[start - 1] != kNoBlock) --start;
  for (size_t j = start; j < end; ++j) {  // Oldest first: evicted first.
    Block& block = blocks_[table[j]];
    CHECK_GT(block.ref_count, 0) << "block " << table[j];
    if (--block.ref_count == 0) PushBack(table[j]);
    table[j] = kNoBlock;
  }
}

std::optional<BlockManager::CachedPrefix> BlockManager::FindCachedWindow(Request& request,
                                                                         int64_t num_tokens,
                                                                         int64_t window) {
  CHECK_EQ(num_tokens % block_size_, 0);
  const int64_t num_blocks = num_tokens / block_size_;
  const int64_t first = std::max<int64_t>(0, num_tokens - window + 1) / block_size_;
  // The keys form a chain, so they are computed in order; only the window's blocks are looked
  // up (callers try shorter prefixes after a miss: each try costs the window, not the prefix).
  while (static_cast<int64_t>(request.block_hashes.size()) < num_blocks) {
    request.block_hashes.push_back(
        HashBlock(request, static_cast<int64_t>(request.block_hashes.size())));
  }
  CachedPrefix prefix;
  prefix.num_tokens = num_tokens;
  prefix.block_ids.assign(static_cast<size_t>(num_blocks), kNoBlock);
  for (int64_t i = first; i < num_blocks; ++i) {
    auto it = cache_.find(request.block_hashes[static_cast<size_t>(i)]);
    if (it == cache_.end()) return std::nullopt;
    prefix.block_ids[static_cast<size_t>(i)] = it->second;
  }
  return prefix;
}

void BlockManager::Fork(const Request& parent, Request& child) {
  CHECK(Table(child).empty());
  for (int32_t b : Table(parent)) {
    if (b != kNoBlock) Reference(b);
  }
  Table(child) = Table(parent);
  child.block_hashes = parent.block_hashes;
}

bool BlockManager::NeedsCopy(const Request& request, int64_t position) const {
  const size_t index = static_cast<size_t>(position / block_size_);
  return index < Table(request).size() && Table(request)[index] != kNoBlock &&
         blocks_[Table(request)[index]].ref_count > 1;
}

BlockCopy BlockManager::CopyOnWrite(Request& request, int64_t position) {
  CHECK(NeedsCopy(request, position));
  const size_t index = static_cast<size_t>(position / block_size_);
  const int32_t src = Table(request)[index];
  const int32_t dst = PopFront();
  blocks_[dst].ref_count = 1;
  --blocks_[src].ref_count;  // Still > 0: another request holds it.
  Table(request)[index] = dst;
  return {src, dst};
}

std::vector<int32_t> BlockManager::FreeQueue() const {
  std::vector<int32_t> order;
  for (int32_t b = head_; b >= 0; b = blocks_[b].next) order.push_back(b);
  return order;
}

absl::Status BlockManager::CheckInvariants(const std::vector<const Request*>& live) const {
  std::vector<int32_t> refs(blocks_.size(), 0);
  for (const Request* request : live) {
    // Exact tables: no block past the request's tokens and the drafts it may verify.
    const int64_t covered =
        request->num_tokens() + static_cast<int64_t>(request->draft_token_ids.size());
    if (static_cast<int64_t>(Table(*request).size()) > (covered + block_size_ - 1) / block_size_) {
      return absl::InternalError(absl::StrCat("request ", request->id, " holds ",
                                              Table(*request).size(), " blocks for ", covered,
                                              " tokens"));
    }
    const std::vector<int32_t>& table = Table(*request);
    const auto held =
        std::find_if(table.begin(), table.end(), [](int32_t b) { return b != kNoBlock; });
    if (std::find(held, table.end(), kNoBlock) != table.end()) {
      return absl::InternalError(
          absl::StrCat("request ", request->id, ": a kNoBlock entry after a held block"));
    }
    for (int32_t b : table) {
      if (b == kNoBlock) continue;
      if (b < 0 || b >= num_blocks()) return absl::InternalError(absl::StrCat("bad block ", b));
      ++refs[b];
    }
  }
  int64_t free = 0, cached = 0, used = 0, keyed = 0;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const Block& block = blocks_[b];
    if (block.ref_count != refs[b]) {
      return absl::InternalError(absl::StrCat("block ", b, " ref_count ", block.ref_count, " but ",
                                              refs[b], " live references"));
    }
    if ((block.ref_count == 0) != block.in_free_queue) {
      return absl::InternalError(absl::StrCat("block ", b, " free-queue membership is wrong"));
    }
    if (block.hash) {
      ++keyed;
      auto it = cache_.find(*block.hash);
      if (it == cache_.end() || it->second != static_cast<int32_t>(b)) {
        return absl::InternalError(absl::StrCat("block ", b, " key not mapped to it"));
      }
    }
    if (block.ref_count > 0) {
      ++used;
    } else if (block.hash) {
      ++cached;
    } else {
      ++free;
    }
  }
  if (keyed != static_cast<int64_t>(cache_.size())) return absl::InternalError("stale cache keys");
  if (static_cast<int64_t>(FreeQueue().size()) != free_count_ || free + cached != free_count_ ||
      cached != cached_free_count_ || used + cached + free != num_blocks()) {
    return absl::InternalError(absl::StrCat("accounting: used ", used, " cached ", cached, " free ",
                                            free, " of ", num_blocks()));
  }
  return absl::OkStatus();
}

}  // namespace iquest
