#include "structured/token_vocabulary.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"

namespace iquest {

TokenVocabulary::TokenVocabulary(const std::vector<std::string>& token_bytes,
                                 const std::vector<bool>& excluded)
    : vocab_size_(static_cast<int32_t>(token_bytes.size())),
      token_bytes_(token_bytes),
      in_trie_(token_bytes.size(), false) {
  CHECK_EQ(token_bytes.size(), excluded.size());
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (!excluded[id] && !token_bytes[id].empty()) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return token_bytes[a] != token_bytes[b] ? token_bytes[a] < token_bytes[b] : a < b;
  });
  std::vector<int32_t> path;  // Node of each depth on the current branch.
  const std::string* previous = nullptr;
  for (int32_t id : ids) {
    const std::string& s = token_bytes[id];
    size_t common = 0;
    if (previous != nullptr) {
      const size_t limit = std::min(previous->size(), s.size());
      while (common < limit && (*previous)[common] == s[common]) ++common;
    }
    while (path.size() > common) {  // Close the nodes this token does not share.
      subtree_end_[path.back()] = num_nodes();
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(num_nodes());
      byte_.push_back(static_cast<uint8_t>(s[d]));
      depth_.push_back(static_cast<int32_t>(d) + 1);
      subtree_end_.push_back(-1);
      token_begin_.push_back(static_cast<int32_t>(node_tokens_.size()));
    }
    // Sorted order puts every token ending at this node before any node below it is made.
    node_tokens_.push_back(id);
    in_trie_[id] = true;
    max_depth_ = std::max(max_depth_, static_cast<int32_t>(s.size()));
    previous = &s;
  }
  for (int32_t node : path) subtree_end_[node] = num_nodes();
  token_begin_.push_back(static_cast<int32_t>(node_tokens_.size()));
}

}  // namespace iquest
