// Splits a Jinja template into text and tag tokens, applying whitespace control exactly as
// jinja2's lexer does under transformers' settings (trim_blocks and lstrip_blocks on).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace iquest::jinja {

enum class TokenKind {
  kText,        // Literal template text, whitespace control already applied.
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // `text` holds the unescaped value.
  kInt,
  kFloat,
  kOperator,  // `text` holds it: "+", "//", "==", "(", ...
  kEof,
};

struct Token {
  TokenKind kind;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;  // 1-based, in the template source.
  int column = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Errors (an unterminated tag or string, a stray character) name the line and column.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, LexerOptions options = {});

}  // namespace iquest::jinja
