// Python semantics of the arithmetic operators, including floor division and modulo that
// round toward negative infinity.
#include "model/tokenizer/jinja/operators.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace iquest::jinja {

absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b,
                                 Budget& budget) {
  const auto type_error = [&]() {
    return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", op, ": '",
                                                   a.TypeName(), "' and '", b.TypeName(), "'"));
  };
  if (a.is_undefined()) return absl::InvalidArgumentError(a.undefined_hint());
  if (b.is_undefined()) return absl::InvalidArgumentError(b.undefined_hint());
  const bool a_num = a.is_number() || a.is_bool();
  const bool b_num = b.is_number() || b.is_bool();
  if (op == "+" && a.is_string() && b.is_string()) {
    RETURN_IF_ERROR(budget.CheckSize(a.as_string().size() + b.as_string().size()));
    return Value(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is_list() && b.is_list()) {
    RETURN_IF_ERROR(
        budget.Step(static_cast<int64_t>(a.as_list().items.size() + b.as_list().items.size())));
    std::vector<Value> items = a.as_list().items;
    items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
    return Value::List(std::move(items), a.as_list().is_tuple);
  }
  const bool a_seq = a.is_string() || a.is_list();
  const bool b_seq = b.is_string() || b.is_list();
  if (op == "*" &&
      ((a_seq && (b.is_int() || b.is_bool())) || (b_seq && (a.is_int() || a.is_bool())))) {
    const Value& seq = a.is_int() || a.is_bool() ? b : a;
    const Value& count_value = a.is_int() || a.is_bool() ? a : b;
    const int64_t count =
        std::max<int64_t>(0, count_value.is_bool() ? count_value.as_bool() : count_value.as_int());
    if (seq.is_string()) {
      const double size = static_cast<double>(seq.as_string().size()) * static_cast<double>(count);
      RETURN_IF_ERROR(budget.CheckSize(size > 1e18 ? SIZE_MAX : static_cast<size_t>(size)));
      std::string out;
      for (int64_t i = 0; i < count; ++i) out += seq.as_string();
      return Value(std::move(out));
    }
    const double size =
        static_cast<double>(seq.as_list().items.size()) * static_cast<double>(count);
    RETURN_IF_ERROR(budget.Step(size > 1e15 ? INT64_MAX / 2 : static_cast<int64_t>(size)));
    std::vector<Value> items;
    for (int64_t i = 0; i < count; ++i) {
      items.insert(items.end(), seq.as_list().items.begin(), seq.as_list().items.end());
    }
    return Value::List(std::move(items), seq.as_list().is_tuple);
  }
  if (!a_num || !b_num) return type_error();
  const bool ints = !a.is_float() && !b.is_float();
  const int64_t x = a.is_bool() ? a.as_bool() : a.is_int() ? a.as_int() : 0;
  const int64_t y = b.is_bool() ? b.as_bool() : b.is_int() ? b.as_int() : 0;
  const double dx = a.as_double();
  const double dy = b.as_double();
  int64_t r = 0;
  if (op == "+") {
    if (ints && !__builtin_add_overflow(x, y, &r)) return Value(r);
    return Value(dx + dy);
  }
  if (op == "-") {
    if (ints && !__builtin_sub_overflow(x, y, &r)) return Value(r);
    return Value(dx - dy);
  }
  if (op == "*") {
    if (ints && !__builtin_mul_overflow(x, y, &r)) return Value(r);
    return Value(dx * dy);
  }
  if (op == "/") {
    if (dy == 0) return absl::InvalidArgumentError("division by zero");
    return Value(dx / dy);
  }
  if (op == "//" || op == "%") {
    if (dy == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
    if (ints) {
      int64_t q = x / y;
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward negative infinity.
        --q;
        m += y;
      }
      return op == "//" ? Value(q) : Value(m);
    }
    const double q = std::floor(dx / dy);
    if (op == "//") return Value(q);
    double m = std::fmod(dx, dy);
    if (m != 0 && ((m < 0) != (dy < 0))) m += dy;
    return Value(m);
  }
  if (op == "**") {
    if (ints && y >= 0) {
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(result, x, &result)) return Value(std::pow(dx, dy));
        if (result == 0 || result == 1) break;
      }
      return Value(result);
    }
    return Value(std::pow(dx, dy));
  }
  return type_error();
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
    }
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_dict()) {
    return item.is_string() && container.as_dict().Find(item.as_string()) != nullptr;
  }
  if (container.is_list()) {
    for (const Value& x : container.as_list().items) {
      if (Equals(x, item)) return true;
    }
    return false;
  }
  if (container.is_undefined()) return false;
  return absl::InvalidArgumentError(
      absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
}

}  // namespace iquest::jinja
