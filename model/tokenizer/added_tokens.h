// Added and special tokens of a tokenizer: found in the text before normalization and
// pre-tokenization (longest match first, leftmost first), honouring lstrip, rstrip and
// single_word.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iquest {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false;       // Swallows the whitespace on its left.
  bool rstrip = false;       // Swallows the whitespace on its right.
  bool single_word = false;  // Matches only between word boundaries.
  bool normalized = false;   // Matched in normalized rather than raw text.
  bool special = false;
};

// A byte range [begin, end) of a text.
struct ByteRange {
  size_t begin = 0;
  size_t end = 0;
};

// One piece of split text: either plain text to tokenize or an added token's id.
struct TextSegment {
  std::string_view text;
  int32_t token_id = -1;  // >= 0 for an added token.
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  bool empty() const { return tokens_.empty(); }
  // Splits `text` into plain-text and added-token segments, in order. Whitespace swallowed by
  // lstrip/rstrip is dropped from the neighbouring text segments; empty text segments are kept
  // out of the result. A special token is not matched where its bytes touch one of
  // `plain_ranges` (sorted, disjoint): there its text stays plain text. Non-special added tokens
  // match everywhere.
  void Split(std::string_view text, std::vector<TextSegment>* segments,
             std::span<const ByteRange> plain_ranges = {}) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node index
    int32_t token = -1;                                 // index into tokens_
  };
  // Longest token index matching at `pos` and satisfying single_word, or -1. Special tokens are
  // skipped when `plain_from` (the start of the next plain range not ending at or before pos)
  // lies before the match's end.
  int32_t MatchAt(std::string_view text, size_t pos, size_t plain_from, size_t* len) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

// True for JavaScript's \s, the whitespace lstrip/rstrip remove.
bool IsStripSpace(std::string_view text, size_t pos, size_t* len);

}  // namespace iquest
