// Python's binary operators on jinja values: + - * / // % ** (with str and list + and *), and
// `in`.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/tokenizer/jinja/builtins.h"
#include "model/tokenizer/jinja/value.h"

namespace iquest::jinja {

// `op` is one of + - * / // % **. Ints stay ints (overflow falls back to float, where Python
// would grow the int); strings and lists built here are charged to `budget`.
absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b,
                                 Budget& budget);

// `item in container`: substring, list membership or dict key; in Undefined is false.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);

}  // namespace iquest::jinja
