// The lexer follows jinja2/lexer.py: newlines normalized to \n, one trailing newline dropped
// (keep_trailing_newline=False), `-` strips all whitespace on its side, lstrip_blocks removes the
// indentation before {% and {#, trim_blocks removes the newline after %} and #}.
#include "model/tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/unicode.h"

namespace iquest::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's "unicode-escape" decoding of a string literal's body, as jinja2 applies it.
std::string Unescape(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    switch (c) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        const size_t width = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        char32_t cp = 0;
        size_t n = 0;
        while (n < width && i + 1 + n < body.size() && HexValue(body[i + 1 + n]) >= 0) {
          cp = cp * 16 + HexValue(body[i + 1 + n]);
          ++n;
        }
        if (n < width) {  // Python rejects it; keeping the text is the gentler failure.
          out.push_back('\\');
          out.push_back(c);
          break;
        }
        unicode::AppendUtf8(cp, &out);
        i += width;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          char32_t cp = c - '0';
          for (int n = 0; n < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++n) {
            cp = cp * 8 + (body[++i] - '0');
          }
          unicode::AppendUtf8(cp, &out);
        } else {
          out.push_back('\\');
          out.push_back(c);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, LexerOptions options) : src_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    bool strip_next = false;  // The previous tag ended with `-`.
    while (pos <= src_.size()) {
      const size_t start = FindTagStart(pos);
      std::string text = src_.substr(pos, start - pos);
      if (strip_next) {
        const size_t first = std::find_if_not(text.begin(), text.end(), IsSpace) - text.begin();
        text.erase(0, first);
        strip_next = false;
      }
      if (start == src_.size()) {
        AddText(std::move(text), pos);
        break;
      }
      const char kind = src_[start + 1];
      const char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      StripBeforeTag(&text, kind, sign, line_starting);
      AddText(std::move(text), pos);
      size_t body = start + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      size_t raw_body = 0;
      char raw_sign = '\0';
      absl::StatusOr<size_t> end =
          kind == '#' ? LexComment(start, body, &strip_next)
          : kind == '%' && MatchTag(body, "raw", &raw_body, &raw_sign) && raw_sign != '+'
              ? LexRaw(start, raw_body, raw_sign, &strip_next)
              : LexTag(kind, start, body, &strip_next);
      if (!end.ok()) return end.status();
      pos = *end;
      line_starting = pos > 0 && src_[pos - 1] == '\n';
      if (pos == src_.size()) {
        break;
      }
    }
    tokens_.push_back(MakeToken(TokenKind::kEof, "", src_.size()));
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t pos) const {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  // Whitespace control of the text before a tag: `-` strips it all, lstrip_blocks strips the
  // indentation before {% and {# (not {{), unless `+`.
  void StripBeforeTag(std::string* text, char kind, char sign, bool line_starting) const {
    if (sign == '-') {
      while (!text->empty() && IsSpace(text->back())) text->pop_back();
    } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
      const size_t nl = text->rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting) && l_pos < text->size() &&
          std::all_of(text->begin() + l_pos, text->end(), IsSpace)) {
        text->resize(l_pos);
      }
    }
  }

  // At `pos` (after `{%` and its sign): `\s*name\s*` then `-%}`, `+%}` or `%}`. On a match,
  // *end is past the `%}` and *sign the end's sign.
  bool MatchTag(size_t pos, std::string_view name, size_t* end, char* sign) const {
    while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
    if (src_.compare(pos, name.size(), name) != 0) return false;
    pos += name.size();
    while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
    *sign = pos < src_.size() && (src_[pos] == '-' || src_[pos] == '+') ? src_[pos] : '\0';
    if (*sign != '\0') ++pos;
    if (src_.compare(pos, 2, "%}") != 0) return false;
    *end = pos + 2;
    return true;
  }

  // `{% raw %}...{% endraw %}`: the body is text, tags in it untouched.
  absl::StatusOr<size_t> LexRaw(size_t start, size_t body, char begin_sign, bool* strip_next) {
    for (size_t p = src_.find("{%", body); p != std::string::npos; p = src_.find("{%", p + 2)) {
      const char sign = p + 2 < src_.size() ? src_[p + 2] : '\0';
      const size_t name_at = p + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      size_t end = 0;
      char end_sign = '\0';
      if (!MatchTag(name_at, "endraw", &end, &end_sign)) continue;
      std::string text = src_.substr(body, p - body);
      if (begin_sign == '-') {
        text.erase(0, std::find_if_not(text.begin(), text.end(), IsSpace) - text.begin());
      }
      StripBeforeTag(&text, '%', sign, body > 0 && src_[body - 1] == '\n');
      AddText(std::move(text), body);
      return AfterTagEnd(end, end_sign == '-', options_.trim_blocks && end_sign != '+', strip_next);
    }
    return ErrorAt(start, "unexpected end of template, expected 'endraw'");
  }

  Token MakeToken(TokenKind kind, std::string text, size_t offset) const {
    Token token{kind, std::move(text)};
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    token.line = static_cast<int>(it - line_starts_.begin()) + 1;
    token.column = static_cast<int>(offset - *it) + 1;
    return token;
  }

  void AddText(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(MakeToken(TokenKind::kText, std::move(text), offset));
  }

  absl::Status ErrorAt(size_t offset, const std::string& what) const {
    const Token at = MakeToken(TokenKind::kEof, "", offset);
    return absl::InvalidArgumentError(
        absl::StrCat("template line ", at.line, ", column ", at.column, ": ", what));
  }

  // Past the end of a tag: the newline trim_blocks removes, or all whitespace after `-`.
  size_t AfterTagEnd(size_t end, bool strip, bool trim, bool* strip_next) const {
    if (strip) {
      *strip_next = true;
    } else if (trim && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    return end;
  }

  absl::StatusOr<size_t> LexComment(size_t start, size_t body, bool* strip_next) {
    const size_t close = src_.find("#}", body);
    if (close == std::string::npos) return ErrorAt(start, "unterminated comment");
    const bool strip = close > body && src_[close - 1] == '-';
    const bool keep = close > body && src_[close - 1] == '+';
    return AfterTagEnd(close + 2, strip, options_.trim_blocks && !keep, strip_next);
  }

  absl::StatusOr<size_t> LexTag(char kind, size_t start, size_t pos, bool* strip_next) {
    const bool is_block = kind == '%';
    tokens_.push_back(MakeToken(is_block ? TokenKind::kBlockBegin : TokenKind::kVarBegin,
                                is_block ? "{%" : "{{", start));
    const std::string close = is_block ? "%}" : "}}";
    std::vector<char> brackets;  // An end marker inside ( [ { does not close the tag.
    while (true) {
      while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
      if (pos >= src_.size()) {
        return ErrorAt(start, is_block ? "unexpected end of template, expected '%}'"
                                       : "unexpected end of template, expected '}}'");
      }
      if (brackets.empty()) {
        const bool minus = src_.compare(pos, 3, "-" + close) == 0;
        const bool plus = is_block && src_.compare(pos, 3, "+" + close) == 0;
        if (minus || plus || src_.compare(pos, 2, close) == 0) {
          tokens_.push_back(
              MakeToken(is_block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, close, pos));
          const size_t end = pos + (minus || plus ? 3 : 2);
          return AfterTagEnd(end, minus, is_block && options_.trim_blocks && !plus, strip_next);
        }
      }
      absl::StatusOr<size_t> next = LexExpressionToken(pos, &brackets);
      if (!next.ok()) return next.status();
      pos = *next;
    }
  }

  absl::StatusOr<size_t> LexExpressionToken(size_t pos, std::vector<char>* brackets) {
    const char c = src_[pos];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t end = pos;
      while (end < src_.size() &&
             (std::isalnum(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) {
        ++end;
      }
      tokens_.push_back(MakeToken(TokenKind::kName, src_.substr(pos, end - pos), pos));
      return end;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber(pos);
    if (c == '\'' || c == '"') {
      size_t end = pos + 1;
      while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
      if (end >= src_.size()) return ErrorAt(pos, "unterminated string");
      tokens_.push_back(MakeToken(TokenKind::kString,
                                  Unescape(std::string_view(src_).substr(pos + 1, end - pos - 1)),
                                  pos));
      return end + 1;
    }
    static constexpr std::string_view kTwoChar[] = {"**", "//", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwoChar) {
      if (src_.compare(pos, 2, op) == 0) {
        tokens_.push_back(MakeToken(TokenKind::kOperator, std::string(op), pos));
        return pos + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      return ErrorAt(pos, absl::StrCat("unexpected char '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') brackets->push_back(c);
    if (c == ')' || c == ']' || c == '}') {
      const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (brackets->empty() || brackets->back() != open) {
        return ErrorAt(pos, absl::StrCat("unexpected '", std::string(1, c), "'"));
      }
      brackets->pop_back();
    }
    tokens_.push_back(MakeToken(TokenKind::kOperator, std::string(1, c), pos));
    return pos + 1;
  }

  absl::StatusOr<size_t> LexNumber(size_t pos) {
    const auto digits = [&](size_t p) {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
        ++p;
      }
      return p;
    };
    size_t end = digits(pos);
    bool is_float = false;
    // `x.0.1` is attribute access on x, as jinja2's (?<!\.) lookbehind has it.
    const bool after_dot = !tokens_.empty() && tokens_.back().kind == TokenKind::kOperator &&
                           tokens_.back().text == ".";
    if (!after_dot && end + 1 < src_.size() && src_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      end = digits(end + 1);
      is_float = true;
    }
    if (!after_dot && end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        end = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Token token = MakeToken(is_float ? TokenKind::kFloat : TokenKind::kInt, text, pos);
    if (is_float) {
      token.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      token.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) return ErrorAt(pos, "integer literal out of range");
    }
    tokens_.push_back(std::move(token));
    return end;
  }

  std::string src_;
  LexerOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, LexerOptions options) {
  return Lexer(NormalizeNewlines(source), options).Run();
}

}  // namespace iquest::jinja
