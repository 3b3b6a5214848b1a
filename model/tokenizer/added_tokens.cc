// A byte trie over the added tokens' contents; each position is tried once, and a match walks at
// most the longest token, so splitting is linear in the text for a fixed token set.
#include "model/tokenizer/added_tokens.h"

#include <algorithm>

#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

// The code point that ends just before `pos`, or U+0000 at the start.
char32_t CodePointBefore(std::string_view text, size_t pos) {
  size_t start = pos;
  while (start > 0 && pos - start < 4) {
    --start;
    const auto b = static_cast<uint8_t>(text[start]);
    if (b < 0x80 || b >= 0xC0) break;
  }
  char32_t cp = 0;
  return start < pos && unicode::DecodeAt(text, start, &cp) == pos - start ? cp : 0;
}

bool IsWordChar(char32_t cp) {
  if (cp == '_') return true;
  const unicode::CharClass c = unicode::Classify(cp);
  return c == unicode::CharClass::kLetter || c == unicode::CharClass::kNumber;
}

std::string_view TrimEnd(std::string_view text) {
  while (!text.empty()) {
    // Walk back one code point and test it.
    size_t start = text.size() - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t len;
    if (!IsStripSpace(text, start, &len)) break;
    text = text.substr(0, start);
  }
  return text;
}

std::string_view TrimStart(std::string_view text) {
  size_t len;
  while (!text.empty() && IsStripSpace(text, 0, &len)) text = text.substr(len);
  return text;
}

}  // namespace

bool IsStripSpace(std::string_view text, size_t pos, size_t* len) {
  char32_t cp = 0;
  *len = unicode::DecodeAt(text, pos, &cp);
  return *len > 0 && unicode::Classify(cp) == unicode::CharClass::kSpace;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  nodes_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& content = tokens_[t].content;
    if (content.empty()) continue;
    first_byte_[static_cast<uint8_t>(content[0])] = true;
    int32_t node = 0;
    for (char ch : content) {
      const auto byte = static_cast<uint8_t>(ch);
      int32_t next = -1;
      for (const auto& [b, child] : nodes_[node].children) {
        if (b == byte) next = child;
      }
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(byte, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    // A later duplicate content wins, like a later map insertion.
    nodes_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::MatchAt(std::string_view text, size_t pos, size_t plain_from,
                                   size_t* len) const {
  int32_t node = 0;
  int32_t best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    int32_t next = -1;
    for (const auto& [b, child] : nodes_[node].children) {
      if (b == byte) next = child;
    }
    if (next < 0) break;
    node = next;
    const int32_t t = nodes_[node].token;
    if (t < 0) continue;
    if (tokens_[t].special && plain_from <= i) continue;  // The match touches plain text.
    if (tokens_[t].single_word) {
      char32_t after = 0;
      if (i + 1 < text.size() && unicode::DecodeAt(text, i + 1, &after) == 0) after = 0;
      if (IsWordChar(CodePointBefore(text, pos)) || IsWordChar(after)) continue;
    }
    best = t;
    *len = i + 1 - pos;
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<TextSegment>* segments,
                              std::span<const ByteRange> plain_ranges) const {
  size_t start = 0;       // Start of the pending plain text.
  size_t next_plain = 0;  // The first plain range that does not end at or before `pos`.
  bool strip_next_start = false;
  auto push_text = [&](std::string_view piece, bool strip_end) {
    if (strip_next_start) piece = TrimStart(piece);
    if (strip_end) piece = TrimEnd(piece);
    if (!piece.empty()) segments->push_back(TextSegment{piece, -1});
  };
  for (size_t pos = 0; pos < text.size();) {
    while (next_plain < plain_ranges.size() && plain_ranges[next_plain].end <= pos) ++next_plain;
    // Where plain text begins at or after pos (pos itself when inside a range), or never.
    const size_t plain_from = next_plain < plain_ranges.size()
                                  ? std::max(pos, plain_ranges[next_plain].begin)
                                  : text.size();
    size_t len = 0;
    const int32_t t =
        first_byte_[static_cast<uint8_t>(text[pos])] ? MatchAt(text, pos, plain_from, &len) : -1;
    if (t < 0) {
      ++pos;
      continue;
    }
    push_text(text.substr(start, pos - start), tokens_[t].lstrip);
    segments->push_back(TextSegment{text.substr(pos, len), tokens_[t].id});
    strip_next_start = tokens_[t].rstrip;
    pos += len;
    start = pos;
  }
  push_text(text.substr(start), false);
}

}  // namespace iquest
