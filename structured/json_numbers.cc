#include "structured/json_numbers.h"

#include <string>
#include <vector>

#include "common/check.h"

namespace iquest {
namespace {

GrammarExpr Digits(char lo, char hi) {
  return GrammarExpr::Bytes(ByteSet::Range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)));
}

// Decimal strings x <= y of the same length (x may have leading zeros inside a longer number).
GrammarExpr SameLength(const std::string& x, const std::string& y) {
  const size_t n = x.size();
  if (n == 0) return GrammarExpr::Empty();
  if (x[0] == y[0]) {
    return GrammarExpr::Seq({Digits(x[0], x[0]), SameLength(x.substr(1), y.substr(1))});
  }
  const std::string rest_x = x.substr(1), rest_y = y.substr(1);
  if (rest_x == std::string(n - 1, '0') && rest_y == std::string(n - 1, '9')) {
    return GrammarExpr::Seq(
        {Digits(x[0], y[0]), GrammarExpr::Repeat(Digits('0', '9'), static_cast<int32_t>(n - 1),
                                                 static_cast<int32_t>(n - 1))});
  }
  std::vector<GrammarExpr> choices;
  choices.push_back(
      GrammarExpr::Seq({Digits(x[0], x[0]), SameLength(rest_x, std::string(n - 1, '9'))}));
  if (x[0] + 1 <= y[0] - 1) {
    choices.push_back(
        GrammarExpr::Seq({Digits(static_cast<char>(x[0] + 1), static_cast<char>(y[0] - 1)),
                          GrammarExpr::Repeat(Digits('0', '9'), static_cast<int32_t>(n - 1),
                                              static_cast<int32_t>(n - 1))}));
  }
  choices.push_back(
      GrammarExpr::Seq({Digits(y[0], y[0]), SameLength(std::string(n - 1, '0'), rest_y)}));
  return GrammarExpr::Alt(std::move(choices));
}

uint64_t Pow10(int n) {
  uint64_t p = 1;
  for (int i = 0; i < n; ++i) p *= 10;
  return p;
}

// Non-negative integers in [lo, hi] written without leading zeros; hi nullopt: up to
// kMaxIntegerDigits digits.
GrammarExpr Magnitudes(uint64_t lo, std::optional<uint64_t> hi) {
  std::vector<GrammarExpr> choices;
  const int lo_len = static_cast<int>(std::to_string(lo).size());
  const int hi_len = hi ? static_cast<int>(std::to_string(*hi).size()) : kMaxIntegerDigits;
  for (int len = lo_len; len <= hi_len; ++len) {
    const uint64_t first = len == 1 ? 0 : Pow10(len - 1);
    const uint64_t last = Pow10(len) - 1;
    const uint64_t a = std::max(lo, first);
    const uint64_t b = hi ? std::min(*hi, last) : last;
    if (a > b) continue;
    choices.push_back(SameLength(std::to_string(a), std::to_string(b)));
  }
  return GrammarExpr::Alt(std::move(choices));
}

GrammarExpr Fraction() {
  return GrammarExpr::Seq(
      {GrammarExpr::Literal("."), GrammarExpr::Repeat(Digits('0', '9'), 1, kMaxFractionDigits)});
}

GrammarExpr ZeroFraction() {  // ".0", ".00", ...: the value stays an integer.
  return GrammarExpr::Seq(
      {GrammarExpr::Literal("."), GrammarExpr::Repeat(Digits('0', '0'), 1, kMaxFractionDigits)});
}

GrammarExpr NonZeroFraction() {  // At least one digit that is not 0.
  return GrammarExpr::Seq(
      {GrammarExpr::Literal("."), GrammarExpr::Repeat(Digits('0', '0'), 0, kMaxFractionDigits - 1),
       Digits('1', '9'), GrammarExpr::Repeat(Digits('0', '9'), 0, kMaxFractionDigits - 1)});
}

// Non-negative numbers y with lo (<=|<) y (<=|<) hi; integer bounds, lo.value >= 0.
GrammarExpr NonNegative(NumberBound lo, std::optional<NumberBound> hi) {
  std::vector<GrammarExpr> choices;
  const uint64_t a = static_cast<uint64_t>(lo.value);
  // Integer part equal to lo: y = lo exactly only when inclusive; above it with a fraction.
  // Integer parts strictly between take any fraction. Integer part equal to hi: y = hi only.
  std::optional<uint64_t> upper_int;  // Largest integer part taking any fraction.
  if (hi) {
    if (hi->value < lo.value) return GrammarExpr::Alt({});
    upper_int = static_cast<uint64_t>(hi->value);
  }
  const bool hi_equal_ok = hi && !hi->exclusive;
  if (hi && static_cast<uint64_t>(hi->value) == a) {
    if (!lo.exclusive && hi_equal_ok) {
      return GrammarExpr::Seq({Magnitudes(a, a), GrammarExpr::Optional(ZeroFraction())});
    }
    return GrammarExpr::Alt({});
  }
  // Integer part a: a itself (with zero fraction) if inclusive, a + nonzero fraction.
  choices.push_back(GrammarExpr::Seq(
      {Magnitudes(a, a), lo.exclusive ? NonZeroFraction() : GrammarExpr::Optional(Fraction())}));
  // Integer parts a+1 .. hi-1 (or unbounded): any fraction.
  if (!upper_int || *upper_int >= a + 2) {
    std::optional<uint64_t> top;
    if (upper_int) top = *upper_int - 1;
    choices.push_back(
        GrammarExpr::Seq({Magnitudes(a + 1, top), GrammarExpr::Optional(Fraction())}));
  }
  if (hi_equal_ok) {
    choices.push_back(GrammarExpr::Seq(
        {Magnitudes(*upper_int, *upper_int), GrammarExpr::Optional(ZeroFraction())}));
  }
  return GrammarExpr::Alt(std::move(choices));
}

}  // namespace

GrammarExpr IntegerRangeExpr(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  CHECK(!lo || !hi || *lo <= *hi);
  std::vector<GrammarExpr> choices;
  // Negative part: "-" then magnitudes in [max(1, -hi), -lo].
  if (!lo || *lo < 0) {
    const uint64_t m_lo = (!hi || *hi >= 0) ? 1 : static_cast<uint64_t>(-(*hi + 1)) + 1;
    std::optional<uint64_t> m_hi;
    if (lo) m_hi = static_cast<uint64_t>(-(*lo + 1)) + 1;
    choices.push_back(GrammarExpr::Seq({GrammarExpr::Literal("-"), Magnitudes(m_lo, m_hi)}));
  }
  if (!hi || *hi >= 0) {
    const uint64_t m_lo = (!lo || *lo < 0) ? 0 : static_cast<uint64_t>(*lo);
    std::optional<uint64_t> m_hi;
    if (hi) m_hi = static_cast<uint64_t>(*hi);
    choices.push_back(Magnitudes(m_lo, m_hi));
  }
  return GrammarExpr::Alt(std::move(choices));
}

GrammarExpr NumberRangeExpr(std::optional<NumberBound> lo, std::optional<NumberBound> hi) {
  std::vector<GrammarExpr> choices;
  // x >= 0 part.
  if (!hi || hi->value > 0 || (hi->value == 0 && !hi->exclusive)) {
    NumberBound nonneg_lo{0, false};
    if (lo && lo->value >= 0) nonneg_lo = *lo;
    choices.push_back(NonNegative(nonneg_lo, hi));
  }
  // x < 0 part: x = -y with y > 0 and the bounds mirrored.
  if (!lo || lo->value < 0) {
    NumberBound y_lo{0, true};
    if (hi && hi->value < 0) y_lo = {-hi->value, hi->exclusive};
    std::optional<NumberBound> y_hi;
    if (lo) y_hi = NumberBound{-lo->value, lo->exclusive};
    choices.push_back(GrammarExpr::Seq({GrammarExpr::Literal("-"), NonNegative(y_lo, y_hi)}));
  }
  return GrammarExpr::Alt(std::move(choices));
}

}  // namespace iquest
