// Runs a parsed template: statements write to an output buffer, expressions evaluate to
// values, every step drawn from one Budget.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/tokenizer/jinja/ast.h"
#include "model/tokenizer/jinja/jinja.h"
#include "model/tokenizer/jinja/value.h"

namespace iquest::jinja {

// `context` must be a dict of the template's variables.
absl::StatusOr<std::string> RenderBody(const Body& body, const Value& context,
                                       const JinjaLimits& limits);

}  // namespace iquest::jinja
