#include "structured/gbnf.h"

#include <cctype>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "structured/utf8_ranges.h"

namespace iquest {
namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

class GbnfParser {
 public:
  GbnfParser(std::string_view text, GrammarBuilder& builder) : text_(text), builder_(builder) {}

  absl::StatusOr<int32_t> Parse() {
    SkipSpace();
    if (pos_ == text_.size()) return Error("the grammar is empty");
    while (pos_ < text_.size()) {
      RETURN_IF_ERROR(builder_.CheckTime());
      const size_t start = pos_;
      const std::string name = ReadName();
      if (name.empty()) return Error("expected a rule name");
      SkipSpace();
      if (text_.substr(pos_, 3) != "::=") {
        pos_ = start;
        return Error(absl::StrCat("expected '::=' after rule name '", name, "'"));
      }
      pos_ += 3;
      ASSIGN_OR_RETURN(GrammarExpr body, ParseAlternatives(/*depth=*/0));
      const int32_t id = RuleId(name);
      if (defined_.size() <= static_cast<size_t>(id)) defined_.resize(id + 1, false);
      if (defined_[id]) {
        pos_ = start;
        return Error(absl::StrCat("rule '", name, "' is defined twice"));
      }
      defined_[id] = true;
      builder_.Define(id, std::move(body));
      SkipSpace();
    }
    const int32_t root = builder_.Find("root");
    if (root < 0 || !defined_[root]) {
      return absl::InvalidArgumentError("grammar: no 'root' rule (the start rule is root)");
    }
    for (int32_t id = 0; id < builder_.num_rules(); ++id) {
      if (static_cast<size_t>(id) >= defined_.size() || !defined_[id]) {
        return absl::InvalidArgumentError(
            absl::StrCat("grammar: rule '", builder_.name(id), "' is used but never defined"));
      }
    }
    return root;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: line ", line, ", column ", column, ": ", what));
  }

  int32_t RuleId(const std::string& name) {
    const int32_t id = builder_.Find(name);
    return id >= 0 ? id : builder_.Declare(name);
  }

  void SkipSpace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string ReadName() {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  // True when the text at pos_ starts the next rule (`name ::=`).
  bool AtRuleStart() const {
    size_t p = pos_;
    while (p < text_.size() && IsNameChar(text_[p])) ++p;
    if (p == pos_) return false;
    while (p < text_.size() && std::isspace(static_cast<unsigned char>(text_[p]))) ++p;
    return text_.substr(p, 3) == "::=";
  }

  absl::StatusOr<GrammarExpr> ParseAlternatives(int depth) {
    if (depth > 64) return Error("groups nested more than 64 deep");
    std::vector<GrammarExpr> choices;
    while (true) {
      ASSIGN_OR_RETURN(GrammarExpr seq, ParseSequence(depth));
      choices.push_back(std::move(seq));
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == '|') {
        ++pos_;
        continue;
      }
      return GrammarExpr::Alt(std::move(choices));
    }
  }

  absl::StatusOr<GrammarExpr> ParseSequence(int depth) {
    std::vector<GrammarExpr> parts;
    while (true) {
      SkipSpace();
      if (pos_ == text_.size()) break;
      const char c = text_[pos_];
      if (c == '|' || c == ')') break;
      if (depth == 0 && AtRuleStart()) break;
      GrammarExpr atom;
      if (c == '"') {
        ASSIGN_OR_RETURN(atom, ParseLiteral());
      } else if (c == '[') {
        ASSIGN_OR_RETURN(atom, ParseClass());
      } else if (c == '.') {
        ++pos_;
        atom = Utf8Expr(CodepointSet::All());
      } else if (c == '(') {
        ++pos_;
        ASSIGN_OR_RETURN(atom, ParseAlternatives(depth + 1));
        SkipSpace();
        if (pos_ == text_.size() || text_[pos_] != ')') return Error("expected ')'");
        ++pos_;
      } else if (IsNameChar(c)) {
        atom = GrammarExpr::Ref(RuleId(ReadName()));
      } else {
        return Error(absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
      ASSIGN_OR_RETURN(atom, ParsePostfix(std::move(atom)));
      parts.push_back(std::move(atom));
    }
    return GrammarExpr::Seq(std::move(parts));
  }

  absl::StatusOr<GrammarExpr> ParsePostfix(GrammarExpr atom) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        atom = GrammarExpr::Repeat(std::move(atom), c == '+' ? 1 : 0, c == '?' ? 1 : -1);
      } else if (c == '{') {
        ++pos_;
        ASSIGN_OR_RETURN(const int32_t lo, ReadCount());
        int32_t hi = lo;
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          SkipSpace();
          if (pos_ < text_.size() && text_[pos_] == '}') {
            hi = -1;
          } else {
            ASSIGN_OR_RETURN(hi, ReadCount());
          }
        }
        SkipSpace();
        if (pos_ == text_.size() || text_[pos_] != '}') return Error("expected '}'");
        ++pos_;
        if (hi >= 0 && hi < lo) return Error("repetition {m,n} with n < m");
        atom = GrammarExpr::Repeat(std::move(atom), lo, hi);
      } else {
        break;
      }
    }
    return atom;
  }

  absl::StatusOr<int32_t> ReadCount() {
    SkipSpace();
    int64_t value = 0;
    const size_t start = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      value = value * 10 + (text_[pos_++] - '0');
      if (value > builder_.limits().max_repeat) {
        return Error(absl::StrCat("repetition count above ", builder_.limits().max_repeat));
      }
    }
    if (pos_ == start) return Error("expected a repetition count");
    SkipSpace();
    return static_cast<int32_t>(value);
  }

  // One character of a literal or class, escapes decoded.
  absl::StatusOr<char32_t> ReadChar() {
    if (pos_ == text_.size()) return Error("unterminated literal or class");
    const unsigned char c = static_cast<unsigned char>(text_[pos_]);
    if (c == '\\') {
      if (pos_ + 1 >= text_.size()) return Error("dangling escape");
      const char e = text_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n':
          return U'\n';
        case 'r':
          return U'\r';
        case 't':
          return U'\t';
        case 'x':
          return ReadHex(2);
        case 'u':
          return ReadHex(4);
        case 'U':
          return ReadHex(8);
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<char32_t>(e);
        default:
          pos_ -= 2;
          return Error(absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
      }
    }
    char32_t cp = 0;
    const int len = DecodeUtf8Char(text_, pos_, &cp);
    if (len == 0) return Error("invalid UTF-8");
    pos_ += static_cast<size_t>(len);
    return cp;
  }

  absl::StatusOr<char32_t> ReadHex(int digits) {
    char32_t value = 0;
    if (ReadHexScalar(text_, pos_, digits, &value) < 0) {
      return Error(absl::StrCat("expected ", digits, " hex digits naming a Unicode scalar value"));
    }
    pos_ += static_cast<size_t>(digits);
    return value;
  }

  absl::StatusOr<GrammarExpr> ParseLiteral() {
    ++pos_;  // '"'
    std::string bytes;
    while (true) {
      if (pos_ == text_.size()) return Error("unterminated string literal");
      if (text_[pos_] == '"') break;
      ASSIGN_OR_RETURN(const char32_t c, ReadChar());
      AppendUtf8Char(c, bytes);
    }
    ++pos_;
    return GrammarExpr::Literal(bytes);
  }

  absl::StatusOr<GrammarExpr> ParseClass() {
    ++pos_;  // '['
    bool negated = false;
    if (pos_ < text_.size() && text_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    CodepointSet set;
    while (true) {
      if (pos_ == text_.size()) return Error("unterminated character class");
      if (text_[pos_] == ']') break;
      ASSIGN_OR_RETURN(const char32_t lo, ReadChar());
      char32_t hi = lo;
      if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
        ++pos_;
        ASSIGN_OR_RETURN(hi, ReadChar());
        if (hi < lo) return Error("character range with its end before its start");
      }
      set.Add(lo, hi);
    }
    ++pos_;
    if (negated) set = set.Complement();
    if (set.empty()) return Error("character class matches nothing");
    return Utf8Expr(set);
  }

  std::string_view text_;
  GrammarBuilder& builder_;
  size_t pos_ = 0;
  std::vector<bool> defined_;
};

}  // namespace

absl::StatusOr<int32_t> ParseGbnf(std::string_view text, GrammarBuilder& builder) {
  return GbnfParser(text, builder).Parse();
}

}  // namespace iquest
