// KV-cache events: what a prefix-aware router (llm-d's KV-cache indexer, Dynamo) needs to mirror
// which blocks this server holds in its prefix cache. The BlockManager records one event each
// time a block gains a prefix-cache key (kStored) or loses it to eviction (kRemoved); replaying
// them in order rebuilds the set of keyed blocks exactly. Publishing is the server's
// (server/kv_events_publisher.h); the scheduler only records.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/sha256.h"

namespace iquest {

struct KvCacheEvent {
  enum class Kind { kStored, kRemoved, kAllCleared };
  Kind kind = Kind::kStored;
  uint64_t block_hash = 0;
  std::optional<uint64_t> parent_block_hash;  // kStored: the previous block's key, if any.
  std::vector<int32_t> token_ids;             // kStored: the block's tokens (block_size of them).
};

// The 64-bit key routers see: the first 8 bytes of our SHA-256 block key, big-endian, top bit
// cleared so that it fits both int64 and uint64 decoders.
uint64_t ExternalBlockHash(const Sha256Digest& digest);

}  // namespace iquest
