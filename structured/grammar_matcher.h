// GrammarMatcher: a compiled constraint bound to a vocabulary. It answers, for a point in the
// output, which tokens may come next (a bitmask over the vocabulary) and moves that point past a
// sampled token.
//
// A point is a set of pushdown stacks over the grammar's elements (the Earley-free "stack set"
// matcher of llama.cpp's GBNF, with tail calls so repetitions keep the stacks flat). Stack sets
// are interned as states of a lazily built DFA over bytes: the first time a (state, byte) pair is
// met its successor is computed and stored, so a mask is a walk of the vocabulary trie doing one
// table lookup per node, and the masks of states seen before come from a cache. Requests with the
// same constraint text share one matcher (and so its DFA and masks). Thread-safe: one mutex, held
// for a whole mask or advance.
//
// Memory is bounded: past `kMaxStates` DFA states everything cached is dropped between calls
// (requests keep their state as a key, not an id), and a walk never makes more than
// `kHardMaxStates`; a successor that would exceed it is treated as a rejection (the mask then
// allows a subset of the language, never more).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "structured/grammar.h"
#include "structured/token_vocabulary.h"

namespace iquest {

// Bit t % 64 of word t / 64 set: token t allowed.
using TokenMask = std::vector<uint64_t>;

inline bool MaskAllows(const TokenMask& mask, int32_t token) {
  return (mask[static_cast<size_t>(token) >> 6] >> (token & 63)) & 1;
}

// A point in the output, by value: what a request keeps between steps. Canonical (sorted,
// deduplicated stacks), so equal points compare equal.
struct GrammarState {
  // [accepting, num_stacks, then per stack: its depth and its positions, bottom first].
  std::vector<int32_t> key;
  bool accepting() const { return key[0] != 0; }
  // Accepting and nothing can follow: the output is finished.
  bool complete() const { return key[0] != 0 && key[1] == 0; }
};

struct GrammarMatcherStats {
  int64_t num_states = 0;
  int64_t num_masks_computed = 0;
  int64_t num_mask_cache_hits = 0;
  int64_t num_flushes = 0;
};

class GrammarMatcher {
 public:
  static constexpr int32_t kMaxStates = 4096;
  static constexpr int32_t kHardMaxStates = 16384;
  static constexpr int32_t kMaxStackDepth = 1024;
  static constexpr int32_t kMaxStacks = 1024;
  static constexpr size_t kMaxMasks = 256;  // Cached masks (16 KiB each for a 128k vocabulary).

  GrammarMatcher(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary);

  const GrammarState& initial() const { return initial_; }
  // The grammar's allowed tokens after `state` (EOS and other excluded tokens never set).
  std::shared_ptr<const TokenMask> Mask(const GrammarState& state);
  // Moves `state` past `token`; false (and `state` unchanged) when the grammar rejects it.
  bool Advance(GrammarState& state, int32_t token);
  // Moves `state` past `bytes` (tests, tools).
  bool AdvanceBytes(GrammarState& state, std::string_view bytes);

  const TokenVocabulary& vocabulary() const { return *vocabulary_; }
  GrammarMatcherStats stats() const;

 private:
  static constexpr int32_t kUnknown = -2;
  static constexpr int32_t kDead = -1;

  // Pushes every stack that `stack` expands to (tops on byte elements) into `out`.
  void Expand(std::vector<int32_t> stack, std::vector<std::vector<int32_t>>& out,
              bool& accepting) const;
  GrammarState MakeState(std::vector<std::vector<int32_t>> stacks, bool accepting) const;
  // The state after `byte`, or an empty key when no stack takes it.
  GrammarState Step(const GrammarState& state, uint8_t byte) const;

  // Under mu_.
  void FlushIfFull();
  int32_t Intern(const GrammarState& state);
  int32_t Next(int32_t id, uint8_t byte);
  void Walk(int32_t id, TokenMask& mask);

  const Grammar grammar_;
  const std::shared_ptr<const TokenVocabulary> vocabulary_;
  int32_t root_position_ = 0;  // A synthetic [root, end] alternative.
  GrammarState initial_;

  mutable std::mutex mu_;
  std::vector<GrammarState> states_;
  absl::flat_hash_map<std::vector<int32_t>, int32_t> ids_;
  std::vector<int32_t> transitions_;  // [state * 256 + byte] -> state, kDead or kUnknown.
  std::unordered_map<int32_t, std::shared_ptr<const TokenMask>> masks_;
  std::vector<int32_t> levels_;  // Walk scratch: the state at each trie depth.
  GrammarMatcherStats stats_;
};

}  // namespace iquest
