// NgramProposer: prompt lookup (vLLM's "ngram", llama.cpp's lookup decoding). The drafts are the
// tokens that followed the most recent earlier occurrence of the sequence's longest suffix of
// ngram_min..ngram_max tokens. Coding agents ask for files they were just shown, so most of an
// edit's output is a copy of some earlier span, and the span's continuation is the next output.
//
// Cost: one backward scan over the sequence per proposal, O(num_tokens * ngram_max) at worst
// and about O(num_tokens) in practice (the inner loop only starts where the last token recurs).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/speculation/proposer.h"

namespace iquest {

class NgramProposer : public Proposer {
 public:
  // 1 <= ngram_min <= ngram_max.
  NgramProposer(int32_t ngram_min, int32_t ngram_max);

  absl::StatusOr<std::vector<std::vector<int32_t>>> Propose(
      std::span<const DraftQuery> queries) override;

  // Up to `max_drafts` tokens to follow `tokens`; empty when no suffix of ngram_min tokens
  // occurs earlier. A continuation that runs into the suffix itself goes on with the drafts
  // (a repeating span repeats).
  std::vector<int32_t> Lookup(std::span<const int32_t> tokens, int64_t max_drafts) const;

 private:
  int32_t ngram_min_;
  int32_t ngram_max_;
};

}  // namespace iquest
