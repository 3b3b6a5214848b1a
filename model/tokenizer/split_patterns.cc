// Linear-time scanners equivalent to the Llama-3, Qwen2 and GPT-2 pre-tokenizer regexes, as
// transformers.js runs them (JavaScript \s, Unicode \p{L} and \p{N}).
#include "model/tokenizer/split_patterns.h"

#include "absl/strings/str_cat.h"
#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

using unicode::CharClass;

constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A cursor over valid UTF-8 that classifies one code point at a time.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  bool AtEnd(size_t pos) const { return pos >= text_.size(); }
  // Class and length of the code point at `pos` (pos < size).
  CharClass ClassAt(size_t pos, size_t* len) const {
    const auto b = static_cast<uint8_t>(text_[pos]);
    if (b < 0x80) {
      *len = 1;
      return unicode::Classify(b);
    }
    char32_t cp = unicode::kReplacement;
    *len = unicode::DecodeAt(text_, pos, &cp);
    if (*len == 0) *len = 1;  // Unreachable for repaired text; keeps the scan moving.
    return unicode::Classify(cp);
  }
  bool Is(size_t pos, CharClass c) const {
    size_t len;
    return !AtEnd(pos) && ClassAt(pos, &len) == c;
  }
  // End of the run of code points of class `c` starting at `pos`, taking at most `max_count`.
  size_t RunEnd(size_t pos, CharClass c, size_t max_count = SIZE_MAX) const {
    size_t count = 0;
    size_t len;
    while (!AtEnd(pos) && count < max_count && ClassAt(pos, &len) == c) {
      pos += len;
      ++count;
    }
    return pos;
  }
  char Byte(size_t pos) const { return AtEnd(pos) ? '\0' : text_[pos]; }

 private:
  std::string_view text_;
};

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// 's|'t|'re|'ve|'m|'ll|'d at `pos`, optionally case-insensitive. Returns the match length or 0.
size_t MatchContraction(const Scanner& s, size_t pos, bool ignore_case) {
  if (s.Byte(pos) != '\'') return 0;
  auto at = [&](size_t i) { return ignore_case ? Lower(s.Byte(pos + i)) : s.Byte(pos + i); };
  const char a = at(1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const char b = at(2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// End of the \s run at `pos` and, through *last_newline_end, the end of its last \r or \n
// (or `pos` when the run has none).
size_t SpaceRun(const Scanner& s, size_t pos, size_t* last_newline_end) {
  *last_newline_end = pos;
  size_t len;
  while (s.Byte(pos) == ' ') ++pos;  // Fast path for the common case (and 1 MB of spaces).
  while (!s.AtEnd(pos) && s.ClassAt(pos, &len) == CharClass::kSpace) {
    const char c = s.Byte(pos);
    pos += len;
    if (c == '\r' || c == '\n') *last_newline_end = pos;
  }
  return pos;
}

// \s+(?!\S)|\s+ on a whitespace run [pos, run_end): the whole run at the end of the text or
// when it is one character, else the run minus its last character (which then joins the next
// piece).
size_t TrailingSpaceMatch(const Scanner& s, size_t pos, size_t run_end) {
  if (s.AtEnd(run_end)) return run_end;
  size_t last = pos;
  size_t len;
  for (size_t p = pos; p < run_end; p += len) {
    s.ClassAt(p, &len);
    last = p;
  }
  return last > pos ? last : run_end;
}

size_t MatchLlama3(const Scanner& s, size_t pos, size_t max_digits) {
  if (size_t n = MatchContraction(s, pos, /*ignore_case=*/true)) return pos + n;
  size_t len;
  const CharClass c = s.ClassAt(pos, &len);
  const char byte = s.Byte(pos);
  if (c == CharClass::kLetter) return s.RunEnd(pos, CharClass::kLetter);
  if (c != CharClass::kNumber && byte != '\r' && byte != '\n' &&
      s.Is(pos + len, CharClass::kLetter)) {
    return s.RunEnd(pos + len, CharClass::kLetter);
  }
  if (c == CharClass::kNumber) return s.RunEnd(pos, CharClass::kNumber, max_digits);
  size_t start = pos;
  if (byte == ' ' && s.Is(pos + 1, CharClass::kOther)) start = pos + 1;
  if (s.Is(start, CharClass::kOther)) {
    size_t end = s.RunEnd(start, CharClass::kOther);
    while (s.Byte(end) == '\r' || s.Byte(end) == '\n') ++end;
    return end;
  }
  // c is whitespace here.
  size_t newline_end;
  const size_t run_end = SpaceRun(s, pos, &newline_end);
  if (newline_end > pos) return newline_end;
  return TrailingSpaceMatch(s, pos, run_end);
}

size_t MatchGpt2(const Scanner& s, size_t pos) {
  if (size_t n = MatchContraction(s, pos, /*ignore_case=*/false)) return pos + n;
  size_t len;
  CharClass c = s.ClassAt(pos, &len);
  size_t start = pos;
  if (s.Byte(pos) == ' ' && !s.AtEnd(pos + 1)) {
    const CharClass next = s.ClassAt(pos + 1, &len);
    if (next != CharClass::kSpace) {
      start = pos + 1;
      c = next;
    }
  }
  if (c != CharClass::kSpace) return s.RunEnd(start, c);
  size_t newline_end;
  const size_t run_end = SpaceRun(s, pos, &newline_end);
  return TrailingSpaceMatch(s, pos, run_end);
}

}  // namespace

absl::StatusOr<SplitPattern> RecognizeSplitPattern(const std::string& regex) {
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported Split regex '", regex.substr(0, 200),
                   "': only the Llama-3, Qwen2 and GPT-2 patterns are implemented (with "
                   "linear-time matchers)"));
}

void SplitText(SplitPattern pattern, std::string_view text, std::vector<std::string_view>* pieces) {
  const Scanner scanner(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = pos + 1;
    switch (pattern) {
      case SplitPattern::kLlama3:
        end = MatchLlama3(scanner, pos, 3);
        break;
      case SplitPattern::kQwen2:
        end = MatchLlama3(scanner, pos, 1);
        break;
      case SplitPattern::kGpt2:
        end = MatchGpt2(scanner, pos);
        break;
    }
    if (end <= pos) end = pos + 1;  // Defensive: every branch consumes at least one character.
    pieces->push_back(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace iquest
