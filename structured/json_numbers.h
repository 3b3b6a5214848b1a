// JSON numbers with bounds, exactly: an integer range [lo, hi] as a digit-by-digit expression
// (no leading zeros), and a number range with integer-valued bounds (inclusive or exclusive) as
// integer part + fraction. Unbounded sides are capped at kMaxDigits digits, a subset of the
// numbers that keeps every output a number that parses (and ends).
#pragma once

#include <cstdint>
#include <optional>

#include "structured/grammar.h"

namespace iquest {

constexpr int kMaxIntegerDigits = 18;
constexpr int kMaxFractionDigits = 16;

// Integers in [lo, hi]; nullopt: unbounded on that side. Requires lo <= hi when both are set.
GrammarExpr IntegerRangeExpr(std::optional<int64_t> lo, std::optional<int64_t> hi);

// Numbers (with an optional fraction, no exponent) in the range; bounds are integers.
struct NumberBound {
  int64_t value = 0;
  bool exclusive = false;
};
GrammarExpr NumberRangeExpr(std::optional<NumberBound> lo, std::optional<NumberBound> hi);

}  // namespace iquest
