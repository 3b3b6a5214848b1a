// The pieces of JSON grammar the schema converter shares, each made once per builder on first
// use: whitespace between tokens, string characters, any string / number / value / object,
// object keys that are none of a list, arrays of distinct values from a finite set, and the
// string formats we generate exactly. The layout rules are json_schema.h's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "structured/grammar.h"

namespace iquest {

class JsonRules {
 public:
  explicit JsonRules(GrammarBuilder& builder) : b_(builder) {}

  GrammarExpr W();     // Whitespace between two tokens.
  GrammarExpr Char();  // One character inside a string, raw or escaped.
  int32_t String();    // Rules: any string, number, value, object.
  int32_t Number();
  int32_t Value();
  int32_t Object();
  // A string key (quotes included) made of plain characters (no escapes) that is none of
  // `names`: the keys of additional properties, which so never repeat a listed one.
  GrammarExpr KeyNotIn(const std::vector<std::string>& names);
  // "[" lo..max_count distinct entries of `literals` (JSON texts, at most 8) "]": one rule per
  // subset already used.
  GrammarExpr UniqueArray(const std::vector<std::string>& literals, int32_t lo, int32_t max_count);
  // The regex of a string format (date, time, date-time, uuid, ipv4), or nullopt.
  static std::optional<std::string> FormatRegex(std::string_view format);

 private:
  int32_t Shared(const std::string& name, const std::function<GrammarExpr()>& body);

  GrammarBuilder& b_;
  std::map<std::string, int32_t> shared_;
  int num_helpers_ = 0;
};

}  // namespace iquest
