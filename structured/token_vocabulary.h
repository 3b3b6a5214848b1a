// TokenVocabulary: the bytes each token adds to the text, laid out as a trie in preorder so the
// matcher walks every token's bytes once per shared prefix, and skips a whole subtree the
// grammar rejects. Special (control) tokens and ids without bytes are left out: a grammar never
// produces them (EOS is allowed separately, only where the grammar may end).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace iquest {

class TokenVocabulary {
 public:
  // `token_bytes[id]`: the bytes token `id` adds mid-text; `excluded[id]`: never allowed.
  TokenVocabulary(const std::vector<std::string>& token_bytes, const std::vector<bool>& excluded);

  int32_t vocab_size() const { return vocab_size_; }
  int32_t num_nodes() const { return static_cast<int32_t>(byte_.size()); }
  int32_t max_depth() const { return max_depth_; }
  const std::string& bytes(int32_t token) const { return token_bytes_[token]; }
  bool in_trie(int32_t token) const { return in_trie_[token]; }

  // Node i (preorder): its byte, its depth (1 for the root's children), the first node after its
  // subtree, and the tokens ending there: node_tokens()[token_begin(i) .. token_begin(i + 1)).
  const std::vector<uint8_t>& node_byte() const { return byte_; }
  const std::vector<int32_t>& node_depth() const { return depth_; }
  const std::vector<int32_t>& subtree_end() const { return subtree_end_; }
  const std::vector<int32_t>& token_begin() const { return token_begin_; }
  const std::vector<int32_t>& node_tokens() const { return node_tokens_; }

 private:
  int32_t vocab_size_ = 0;
  int32_t max_depth_ = 0;
  std::vector<std::string> token_bytes_;
  std::vector<bool> in_trie_;
  std::vector<uint8_t> byte_;
  std::vector<int32_t> depth_;
  std::vector<int32_t> subtree_end_;
  std::vector<int32_t> token_begin_;  // num_nodes + 1 entries.
  std::vector<int32_t> node_tokens_;
};

}  // namespace iquest
