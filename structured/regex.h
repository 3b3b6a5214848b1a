// Regular expressions (the `regex` constraint and JSON schema `pattern`) as grammar expressions.
// The output must match the whole pattern (Python's re.fullmatch). Supported: literals and
// escapes (\n \t \r \f \v \0 \xHH \uHHHH \\ \. ...), `.` (anything but a newline), classes with
// ranges and negation, \d \w \s and their negations, groups ( ), (?: ), (?P<name> ), (?<name> ),
// alternation, * + ? {m} {m,} {m,n} (lazy forms: the same language), ^ at the start and $ at the
// end. Refused with kInvalidArgument naming the construct: backreferences, lookaround, word
// boundaries, inline flags, possessive quantifiers, anchors elsewhere.
//
// \d \w \s are their ASCII sets, a subset of Python's Unicode classes, so every output matches;
// \D \W \S and a negated class holding one of them are limited to ASCII for the same reason.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "structured/grammar.h"

namespace iquest {

// `json_escaped`: the characters are written as inside a JSON string (utf8_ranges.h).
absl::StatusOr<GrammarExpr> RegexToExpr(std::string_view pattern, const GrammarBuilder& builder,
                                        bool json_escaped = false);

}  // namespace iquest
