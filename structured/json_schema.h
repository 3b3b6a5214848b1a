// JSON schema -> grammar. Supported (anything else is kInvalidArgument naming the keyword and
// where it is): type (one or a list), enum, const, properties, required, additionalProperties
// (false when absent, as OpenAI's strict mode and xgrammar do: the object has exactly the listed
// properties, in the listed order), string minLength / maxLength / pattern / format (date, time,
// date-time, uuid, ipv4), integer minimum / maximum / exclusiveMinimum / exclusiveMaximum, the
// same on number with integer-valued bounds, array items / prefixItems / minItems / maxItems /
// uniqueItems (for items that are an enum, a const or a boolean), anyOf, oneOf (as anyOf: the
// branches should not overlap), allOf with one schema, $ref to "#" and "#/$defs/..." or
// "#/definitions/..." (recursion allowed), and the annotations (title, description, default,
// examples, $schema, $id, $comment, deprecated, readOnly, writeOnly).
//
// Numbers have at most 18 integer digits, 16 fraction digits and a 2-digit exponent (so every
// one is a finite double). Output layout: between two tokens nothing, one space, or a
// newline and up to kMaxJsonIndent spaces or tabs; strings use the escapes \" \\ \/ \b \f \n \r \t
// and \uXXXX (no surrogate halves, so a string's length in characters is what minLength/maxLength
// count).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "structured/grammar.h"

namespace iquest {

// The longest indentation after a newline between two tokens: pretty-printed JSON ten levels
// deep; bounded so that no output can be whitespace forever.
constexpr int kMaxJsonIndent = 20;

// Adds the rules for `schema` to `builder`; returns the root rule.
absl::StatusOr<int32_t> JsonSchemaToGrammar(const nlohmann::ordered_json& schema,
                                            GrammarBuilder& builder);

// Any JSON object (the `json_object` constraint: OpenAI's response_format json_object).
absl::StatusOr<int32_t> JsonObjectGrammar(GrammarBuilder& builder);

}  // namespace iquest
