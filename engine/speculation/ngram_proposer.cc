#include "engine/speculation/ngram_proposer.h"

#include "common/check.h"

namespace iquest {

NgramProposer::NgramProposer(int32_t ngram_min, int32_t ngram_max)
    : ngram_min_(ngram_min), ngram_max_(ngram_max) {
  CHECK(ngram_min >= 1 && ngram_min <= ngram_max) << ngram_min << " " << ngram_max;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> NgramProposer::Propose(
    std::span<const DraftQuery> queries) {
  std::vector<std::vector<int32_t>> drafts;
  drafts.reserve(queries.size());
  for (const DraftQuery& q : queries) drafts.push_back(Lookup(q.request->token_ids, q.max_drafts));
  return drafts;
}

std::vector<int32_t> NgramProposer::Lookup(std::span<const int32_t> tokens,
                                           int64_t max_drafts) const {
  std::vector<int32_t> drafts;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (max_drafts <= 0 || n < ngram_min_ + 1) return drafts;
  const int32_t last = tokens[static_cast<size_t>(n - 1)];
  // The match ending at `end` (tokens[end] == last, end < n - 1) and its length.
  int64_t best_end = -1, best_len = 0;
  for (int64_t end = n - 2; end >= 0; --end) {
    if (tokens[static_cast<size_t>(end)] != last) continue;
    int64_t len = 1;
    while (len < ngram_max_ && end - len >= 0 &&
           tokens[static_cast<size_t>(end - len)] == tokens[static_cast<size_t>(n - 1 - len)]) {
      ++len;
    }
    if (len > best_len) {  // The most recent match of each length wins.
      best_len = len;
      best_end = end;
      if (len == ngram_max_) break;
    }
  }
  if (best_len < ngram_min_) return drafts;
  for (int64_t i = best_end + 1; static_cast<int64_t>(drafts.size()) < max_drafts; ++i) {
    drafts.push_back(i < n ? tokens[static_cast<size_t>(i)] : drafts[static_cast<size_t>(i - n)]);
  }
  return drafts;
}

}  // namespace iquest
