// Recursive-descent parser for the Jinja statements and expressions chat templates use,
// following jinja2/parser.py's grammar and operator precedence.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "model/tokenizer/jinja/ast.h"

namespace iquest::jinja {

// Errors name the line and column ("template line 3, column 14: expected 'endfor'").
absl::StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace iquest::jinja
