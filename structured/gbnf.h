// GBNF: the grammar text format of the `grammar` constraint (llama.cpp's GBNF, documented in
// docs/structured-output.md). Rules `name ::= alternatives`; the start rule is `root`. Elements:
// "literal", [class] / [^class] with ranges, `.` (any character), rule names, ( groups ),
// postfix * + ? {m} {m,} {m,n}; `|` alternation; `#` comments. Escapes in literals and classes:
// \n \r \t \\ \" \] \[ \- \^ \xHH \uHHHH \UHHHHHHHH. A rule ends where the next `name ::=`
// begins, so alternatives may continue on the next lines.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "structured/grammar.h"

namespace iquest {

// Parses `text` into `builder`; returns the root rule. Errors are kInvalidArgument naming the
// line and column.
absl::StatusOr<int32_t> ParseGbnf(std::string_view text, GrammarBuilder& builder);

}  // namespace iquest
