// The order of K and V inside a paged-cache block, defined once for every backend.
//
// A layer's K cache (and likewise its V cache) is [num_blocks][num_kv_heads][block_size][head_dim]:
// head-major inside a block, so an attention kernel reads one KV head's keys for a whole block
// as one contiguous run of block_size * head_dim elements. (The token-major alternative,
// [block_size][num_kv_heads][head_dim], makes WriteKv contiguous instead; writes are one token
// per sequence per step, reads are the whole context, so reads win.)
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace iquest {

// The slot of a token that is computed but not stored (a padding row of a graph step).
inline constexpr int32_t kPaddingSlot = -1;

// One layer's paged K and V pools. Slot s is token (s % block_size) of block (s / block_size).
struct PagedKvView {
  void* k = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim]
  void* v = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim]
  DType dtype = DType::kF32;
  int64_t num_blocks = 0;
  int64_t block_size = 0;  // Tokens per block.
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// Element offset of (slot, kv_head, d) in a K or V pool.
inline int64_t KvOffset(const PagedKvView& kv, int64_t slot, int64_t kv_head, int64_t d) {
  const int64_t block = slot / kv.block_size;
  const int64_t in_block = slot % kv.block_size;
  return ((block * kv.num_kv_heads + kv_head) * kv.block_size + in_block) * kv.head_dim + d;
}

}  // namespace iquest
