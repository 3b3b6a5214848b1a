// Sets of Unicode code points as grammar expressions over UTF-8 bytes: a class like [^"\\] or
// the regex `.` becomes an alternation of byte-set sequences (the classic UTF-8 range split), so
// the matcher only ever sees bytes and every accepted text is valid UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "structured/grammar.h"

namespace iquest {

constexpr char32_t kMaxCodepoint = 0x10FFFF;

// Sorted, disjoint, non-adjacent inclusive ranges of code points (surrogates never included).
class CodepointSet {
 public:
  static CodepointSet All();  // Every scalar value.
  void Add(char32_t lo, char32_t hi);
  void Add(const CodepointSet& other);
  CodepointSet Complement() const;  // Within All().
  CodepointSet Intersect(const CodepointSet& other) const;
  bool empty() const { return ranges_.empty(); }
  bool Contains(char32_t c) const;
  const std::vector<std::pair<char32_t, char32_t>>& ranges() const { return ranges_; }

 private:
  void Normalize();
  std::vector<std::pair<char32_t, char32_t>> ranges_;
};

// The UTF-8 encodings of the set's code points, as one expression. `json_escaped`: as they are
// written inside a JSON string: '"', '\\' and control characters as escapes, the rest raw.
GrammarExpr Utf8Expr(const CodepointSet& set, bool json_escaped = false);

// The character at text[pos]: its length in bytes (1..4) and value, or 0 when the bytes there
// are not a UTF-8 sequence (overlong forms and surrogates included).
int DecodeUtf8Char(std::string_view text, size_t pos, char32_t* cp);

// `digits` hex digits at text[pos] as a scalar value (the \xHH \uHHHH \UHHHHHHHH escapes of
// regexes and GBNF): the number of digits read, or -1 when they are not all there or name no
// scalar value (a surrogate, or past U+10FFFF).
int ReadHexScalar(std::string_view text, size_t pos, int digits, char32_t* value);

// Appends the UTF-8 encoding of `c` (a scalar value) to `out`.
void AppendUtf8Char(char32_t c, std::string& out);

}  // namespace iquest
