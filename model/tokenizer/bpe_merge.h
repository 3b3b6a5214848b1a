// The two BPE merge loops over a word's symbol list: a (rank, position) min-heap for short words,
// and rank-by-rank passes for long ones. Both apply merges in exactly the same order: lowest rank
// first, leftmost first among equal ranks (HF tokenizers and transformers.js).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace iquest {

struct BpeMerge {
  int32_t rank;
  int32_t merged_id;
};

// One symbol of a word being merged: a doubly linked list over a vector.
struct BpeSymbol {
  int32_t id;  // -1: a character missing from the vocabulary (never merges).
  int32_t prev;
  int32_t next;
  uint32_t len;  // Bytes; 0 once merged into its left neighbour.
};

// (left id, right id) packed into 64 bits -> merge. Ranks are distinct and below size(): they
// are indices into the merge list.
using BpeMergeMap = absl::flat_hash_map<uint64_t, BpeMerge>;

inline uint64_t BpePairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

void MergeWithHeap(const BpeMergeMap& merges, std::vector<BpeSymbol>* symbols);
// Same result as MergeWithHeap; faster on long words (one pass per rank present, with candidate
// positions bucketed by rank), whatever the order of the merge list.
void MergeByRank(const BpeMergeMap& merges, std::vector<BpeSymbol>* symbols);

}  // namespace iquest
