#include "structured/regex.h"

#include <cctype>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "structured/utf8_ranges.h"

namespace iquest {
namespace {

CodepointSet Ascii(std::string_view which) {
  CodepointSet s;
  if (which == "d") {
    s.Add('0', '9');
  } else if (which == "w") {
    s.Add('0', '9');
    s.Add('a', 'z');
    s.Add('A', 'Z');
    s.Add('_', '_');
  } else {  // "s"
    s.Add('\t', '\r');
    s.Add(' ', ' ');
  }
  return s;
}

CodepointSet AsciiComplement(const CodepointSet& set) {
  CodepointSet out;
  CodepointSet complement = set.Complement();
  for (const auto& [lo, hi] : complement.ranges()) {
    if (lo < 0x80) out.Add(lo, std::min<char32_t>(hi, 0x7F));
  }
  return out;
}

class RegexParser {
 public:
  RegexParser(std::string_view pattern, const GrammarBuilder& builder, bool json_escaped)
      : pattern_(pattern), builder_(builder), json_escaped_(json_escaped) {}

  absl::StatusOr<GrammarExpr> Parse() {
    if (!pattern_.empty() && pattern_[0] == '^') ++pos_;
    ASSIGN_OR_RETURN(GrammarExpr e, ParseAlternatives(0));
    if (pos_ < pattern_.size()) {
      return Error(pattern_[pos_] == ')' ? "unbalanced ')'" : "unexpected character");
    }
    return e;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regex: ", what, " at offset ", pos_, " of the pattern"));
  }

  bool AtEnd() const { return pos_ >= pattern_.size(); }
  char Peek() const { return pattern_[pos_]; }

  absl::StatusOr<GrammarExpr> ParseAlternatives(int depth) {
    if (depth > 64) return Error("groups nested more than 64 deep");
    std::vector<GrammarExpr> choices;
    while (true) {
      ASSIGN_OR_RETURN(GrammarExpr seq, ParseSequence(depth));
      choices.push_back(std::move(seq));
      if (!AtEnd() && Peek() == '|') {
        ++pos_;
        continue;
      }
      return GrammarExpr::Alt(std::move(choices));
    }
  }

  absl::StatusOr<GrammarExpr> ParseSequence(int depth) {
    std::vector<GrammarExpr> parts;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      RETURN_IF_ERROR(builder_.CheckTime());
      if (Peek() == '$') {
        ++pos_;
        // Only at the very end (or before a closing group / alternative at top level).
        if (!AtEnd() && !(depth == 0 && Peek() == '|')) return Error("'$' before the end");
        continue;
      }
      if (Peek() == '^') return Error("'^' after the start");
      ASSIGN_OR_RETURN(GrammarExpr atom, ParseAtom(depth));
      ASSIGN_OR_RETURN(atom, ParseQuantifier(std::move(atom)));
      parts.push_back(std::move(atom));
    }
    return GrammarExpr::Seq(std::move(parts));
  }

  absl::StatusOr<GrammarExpr> ParseQuantifier(GrammarExpr atom) {
    while (!AtEnd()) {
      const char c = Peek();
      int32_t lo = 0, hi = -1;
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        lo = c == '+' ? 1 : 0;
        hi = c == '?' ? 1 : -1;
      } else if (c == '{' && IsCountedRepeat()) {
        ++pos_;
        ASSIGN_OR_RETURN(lo, ReadCount());
        hi = lo;
        if (Peek() == ',' && pattern_[pos_ - 1] == '{') hi = -1;  // {,n}: n is read below.
        if (Peek() == ',') {
          ++pos_;
          if (Peek() == '}') {
            hi = -1;
          } else {
            ASSIGN_OR_RETURN(hi, ReadCount());
          }
        }
        ++pos_;  // '}' (IsCountedRepeat checked it)
        if (hi >= 0 && hi < lo) return Error("repetition {m,n} with n < m");
      } else {
        break;
      }
      if (!AtEnd() && Peek() == '?') ++pos_;  // Lazy: the same language.
      if (!AtEnd() && Peek() == '+') return Error("possessive quantifiers are not supported");
      atom = GrammarExpr::Repeat(std::move(atom), lo, hi);
    }
    return atom;
  }

  // `{` starts a repetition only as {m}, {m,}, {,n} or {m,n}; otherwise it is a literal brace
  // (as in Python).
  bool IsCountedRepeat() const {
    size_t p = pos_ + 1;
    const size_t digits_start = p;
    while (p < pattern_.size() && std::isdigit(static_cast<unsigned char>(pattern_[p]))) ++p;
    // Python also reads {,n} as {0,n}.
    if (p == digits_start && (p >= pattern_.size() || pattern_[p] != ',')) return false;
    if (p < pattern_.size() && pattern_[p] == ',') {
      ++p;
      while (p < pattern_.size() && std::isdigit(static_cast<unsigned char>(pattern_[p]))) ++p;
    }
    return p < pattern_.size() && pattern_[p] == '}';
  }

  absl::StatusOr<int32_t> ReadCount() {
    int64_t value = 0;
    while (!AtEnd() && std::isdigit(static_cast<unsigned char>(Peek()))) {
      value = value * 10 + (pattern_[pos_++] - '0');
      if (value > builder_.limits().max_repeat) {
        return Error(absl::StrCat("repetition count above ", builder_.limits().max_repeat));
      }
    }
    return static_cast<int32_t>(value);
  }

  GrammarExpr Chars(const CodepointSet& set) const { return Utf8Expr(set, json_escaped_); }

  absl::StatusOr<GrammarExpr> ParseAtom(int depth) {
    const char c = Peek();
    if (c == '(') {
      ++pos_;
      if (!AtEnd() && Peek() == '?') {
        ++pos_;
        if (!AtEnd() && Peek() == ':') {
          ++pos_;
        } else if (!AtEnd() && (Peek() == 'P' || Peek() == '<') &&
                   pattern_.substr(pos_, 2) != "<=" && pattern_.substr(pos_, 2) != "<!") {
          if (Peek() == 'P') ++pos_;
          if (AtEnd() || Peek() != '<') return Error("unsupported group syntax");
          while (!AtEnd() && Peek() != '>') ++pos_;
          if (AtEnd()) return Error("unterminated group name");
          ++pos_;
        } else if (!AtEnd() && (Peek() == '=' || Peek() == '!' || Peek() == '<')) {
          return Error("lookaround assertions are not supported");
        } else {
          return Error("inline flags and other (? groups are not supported");
        }
      }
      ASSIGN_OR_RETURN(GrammarExpr inner, ParseAlternatives(depth + 1));
      if (AtEnd() || Peek() != ')') return Error("missing ')'");
      ++pos_;
      return inner;
    }
    if (c == '[') return ParseClass();
    if (c == '.') {
      ++pos_;
      CodepointSet newline;
      newline.Add('\n', '\n');
      return Chars(newline.Complement());
    }
    if (c == '*' || c == '+' || c == '?') return Error("nothing to repeat");
    if (c == '\\') {
      ++pos_;
      if (AtEnd()) return Error("dangling backslash");
      const char e = Peek();
      if (e == 'd' || e == 'w' || e == 's') {
        ++pos_;
        return Chars(Ascii(std::string(1, e)));
      }
      if (e == 'D' || e == 'W' || e == 'S') {
        ++pos_;
        return Chars(AsciiComplement(
            Ascii(std::string(1, static_cast<char>(std::tolower(static_cast<unsigned char>(e)))))));
      }
      if (e == 'b' || e == 'B' || e == 'A' || e == 'Z' || e == 'z' || e == 'G') {
        return Error("anchors and word boundaries are not supported");
      }
      if (std::isdigit(static_cast<unsigned char>(e)) && e != '0') {
        return Error("backreferences are not supported");
      }
      ASSIGN_OR_RETURN(const char32_t ch, ReadEscape());
      CodepointSet one;
      one.Add(ch, ch);
      return Chars(one);
    }
    ASSIGN_OR_RETURN(const char32_t ch, ReadLiteralChar());
    CodepointSet one;
    one.Add(ch, ch);
    return Chars(one);
  }

  // After a backslash: a single-character escape.
  absl::StatusOr<char32_t> ReadEscape() {
    const char e = pattern_[pos_++];
    switch (e) {
      case 'n':
        return U'\n';
      case 't':
        return U'\t';
      case 'r':
        return U'\r';
      case 'f':
        return U'\f';
      case 'v':
        return U'\v';
      case '0':
        return U'\0';
      case 'a':
        return U'\a';
      case 'x':
        return ReadHex(2);
      case 'u':
        return ReadHex(4);
      case 'U':
        return ReadHex(8);
      default:
        if (std::isalnum(static_cast<unsigned char>(e))) {
          --pos_;
          return Error(absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
        }
        return static_cast<char32_t>(static_cast<unsigned char>(e));
    }
  }

  absl::StatusOr<char32_t> ReadHex(int digits) {
    char32_t value = 0;
    if (ReadHexScalar(pattern_, pos_, digits, &value) < 0) {
      return Error(absl::StrCat("expected ", digits, " hex digits naming a Unicode scalar value"));
    }
    pos_ += static_cast<size_t>(digits);
    return value;
  }

  absl::StatusOr<char32_t> ReadLiteralChar() {
    char32_t cp = 0;
    const int len = DecodeUtf8Char(pattern_, pos_, &cp);
    if (len == 0) return Error("invalid UTF-8");
    pos_ += static_cast<size_t>(len);
    return cp;
  }

  absl::StatusOr<GrammarExpr> ParseClass() {
    ++pos_;  // '['
    bool negated = false;
    if (!AtEnd() && Peek() == '^') {
      negated = true;
      ++pos_;
    }
    CodepointSet set;
    bool has_unicode_class = false;  // \d \w \s: ASCII here, wider in Python.
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("unterminated character class");
      if (Peek() == ']' && !first) break;
      first = false;
      if (pattern_.substr(pos_, 2) == "[:") return Error("POSIX classes are not supported");
      char32_t lo;
      if (Peek() == '\\') {
        ++pos_;
        if (AtEnd()) return Error("dangling backslash");
        const char e = Peek();
        if (e == 'd' || e == 'w' || e == 's') {
          ++pos_;
          set.Add(Ascii(std::string(1, e)));
          has_unicode_class = true;
          continue;
        }
        if (e == 'D' || e == 'W' || e == 'S') {
          ++pos_;
          set.Add(AsciiComplement(Ascii(
              std::string(1, static_cast<char>(std::tolower(static_cast<unsigned char>(e)))))));
          has_unicode_class = true;
          continue;
        }
        if (e == 'b') {
          ++pos_;
          lo = U'\b';
        } else {
          ASSIGN_OR_RETURN(lo, ReadEscape());
        }
      } else {
        ASSIGN_OR_RETURN(lo, ReadLiteralChar());
      }
      char32_t hi = lo;
      if (pos_ + 1 < pattern_.size() && Peek() == '-' && pattern_[pos_ + 1] != ']') {
        ++pos_;
        if (Peek() == '\\') {
          ++pos_;
          if (AtEnd()) return Error("dangling backslash");
          ASSIGN_OR_RETURN(hi, ReadEscape());
        } else {
          ASSIGN_OR_RETURN(hi, ReadLiteralChar());
        }
        if (hi < lo) return Error("character range with its end before its start");
      }
      set.Add(lo, hi);
    }
    ++pos_;
    if (negated) set = has_unicode_class ? AsciiComplement(set) : set.Complement();
    if (set.empty()) return Error("character class matches nothing");
    return Chars(set);
  }

  std::string_view pattern_;
  const GrammarBuilder& builder_;
  bool json_escaped_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<GrammarExpr> RegexToExpr(std::string_view pattern, const GrammarBuilder& builder,
                                        bool json_escaped) {
  return RegexParser(pattern, builder, json_escaped).Parse();
}

}  // namespace iquest
