// The JSON schema keywords of a single scalar value: strings (minLength / maxLength, pattern,
// format) and numbers (integer and number bounds). Pure functions of one schema node; the walk
// over combinators, references, objects and arrays is json_schema.cc's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "structured/grammar.h"
#include "structured/json_rules.h"

namespace iquest {

// kInvalidArgument "json_schema: <what> (at <path>)": every schema refusal's form.
absl::Status JsonSchemaError(const std::string& path, absl::string_view what);

// A count keyword (minLength, maxItems, ...): absent, or an integer in [0, limits.max_repeat].
absl::StatusOr<std::optional<int64_t>> SchemaCount(const nlohmann::ordered_json& s, const char* key,
                                                   const std::string& path,
                                                   const GrammarLimits& limits);

// A string value (quotes included) under s's string keywords.
absl::StatusOr<GrammarExpr> StringSchemaExpr(const nlohmann::ordered_json& s,
                                             const std::string& path, JsonRules& j,
                                             const GrammarBuilder& b);
// An integer, or a number with integer-valued bounds, under s's bound keywords.
absl::StatusOr<GrammarExpr> IntegerSchemaExpr(const nlohmann::ordered_json& s,
                                              const std::string& path);
absl::StatusOr<GrammarExpr> NumberSchemaExpr(const nlohmann::ordered_json& s,
                                             const std::string& path, JsonRules& j);

}  // namespace iquest
