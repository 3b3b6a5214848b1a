// jinja2's built-in tests (jinja2/tests.py): `x is defined`, `x is string`, `n is divisibleby 3`.
#include <algorithm>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/jinja/builtins.h"
#include "model/tokenizer/jinja/text.h"

namespace iquest::jinja {
namespace {

using TestFn = std::function<absl::StatusOr<bool>(Budget&, const Value&, const CallArgs&)>;

absl::StatusOr<bool> CompareTest(const Value& v, const CallArgs& args, const std::string& op) {
  const Value* other = args.Get(0, "b");
  if (other == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("test '", op, "' needs an argument"));
  if (op == "eq") return Equals(v, *other);
  if (op == "ne") return !Equals(v, *other);
  if (op == "lt") return LessThan(v, *other);
  if (op == "gt") return LessThan(*other, v);
  ASSIGN_OR_RETURN(bool less, op == "le" ? LessThan(*other, v) : LessThan(v, *other));
  return !less;
}

const absl::flat_hash_map<std::string, TestFn>& Tests() {
  const auto simple = [](std::function<bool(const Value&)> fn) -> TestFn {
    return [fn](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<bool> { return fn(v); };
  };
  const auto compare = [](const char* op) -> TestFn {
    return [op](Budget&, const Value& v, const CallArgs& a) { return CompareTest(v, a, op); };
  };
  const auto integer_test = [](bool want_even) -> TestFn {
    return [want_even](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<bool> {
      if (!v.is_int()) return absl::InvalidArgumentError("even/odd need an integer");
      return (v.as_int() % 2 == 0) == want_even;
    };
  };
  static const auto* tests = new absl::flat_hash_map<std::string, TestFn>{
      {"defined", simple([](const Value& v) { return !v.is_undefined(); })},
      {"undefined", simple([](const Value& v) { return v.is_undefined(); })},
      {"none", simple([](const Value& v) { return v.is_none(); })},
      {"string", simple([](const Value& v) { return v.is_string(); })},
      {"number", simple([](const Value& v) { return v.is_number() || v.is_bool(); })},
      {"integer", simple([](const Value& v) { return v.is_int(); })},
      {"float", simple([](const Value& v) { return v.is_float(); })},
      {"boolean", simple([](const Value& v) { return v.is_bool(); })},
      {"true", simple([](const Value& v) { return v.is_bool() && v.as_bool(); })},
      {"false", simple([](const Value& v) { return v.is_bool() && !v.as_bool(); })},
      {"mapping", simple([](const Value& v) { return v.is_dict() && !v.as_dict().is_namespace; })},
      {"iterable", simple([](const Value& v) {
         return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
       })},
      {"sequence", simple([](const Value& v) {
         return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
       })},
      {"callable", simple([](const Value& v) { return v.is_callable(); })},
      {"lower", simple([](const Value& v) {
         return v.is_string() && text::Lower(v.as_string()) == v.as_string();
       })},
      {"upper", simple([](const Value& v) {
         return v.is_string() && text::Upper(v.as_string()) == v.as_string();
       })},
      {"even", integer_test(true)},
      {"odd", integer_test(false)},
      {"divisibleby",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         const Value* n = a.Get(0, "num");
         if (!v.is_int() || n == nullptr || !n->is_int())
           return absl::InvalidArgumentError("divisibleby needs integers");
         if (n->as_int() == 0)
           return absl::InvalidArgumentError("integer division or modulo by zero");
         return v.as_int() % n->as_int() == 0;
       }},
      {"eq", compare("eq")},
      {"equalto", compare("eq")},
      {"==", compare("eq")},
      {"ne", compare("ne")},
      {"!=", compare("ne")},
      {"lt", compare("lt")},
      {"lessthan", compare("lt")},
      {"<", compare("lt")},
      {"gt", compare("gt")},
      {"greaterthan", compare("gt")},
      {">", compare("gt")},
      {"le", compare("le")},
      {"<=", compare("le")},
      {"ge", compare("ge")},
      {">=", compare("ge")},
      {"sameas",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         const Value* other = a.Get(0, "other");
         if (other == nullptr) return absl::InvalidArgumentError("sameas needs an argument");
         // Identity: singletons (None, True, False) and shared lists/dicts.
         if (v.is_none() || other->is_none()) return v.is_none() && other->is_none();
         if (v.is_bool() || other->is_bool())
           return v.is_bool() && other->is_bool() && v.as_bool() == other->as_bool();
         if (v.is_list() && other->is_list()) return &v.as_list() == &other->as_list();
         if (v.is_dict() && other->is_dict()) return &v.as_dict() == &other->as_dict();
         return Equals(v, *other);
       }},
      {"in",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::StatusOr<bool> {
         const Value* seq = a.Get(0, "seq");
         if (seq == nullptr) return absl::InvalidArgumentError("in needs an argument");
         if (seq->is_string())
           return v.is_string() && seq->as_string().find(v.as_string()) != std::string::npos;
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(*seq));
         return std::any_of(items.begin(), items.end(),
                            [&](const Value& x) { return Equals(x, v); });
       }},
  };
  return *tests;
}

}  // namespace

absl::StatusOr<bool> ApplyTest(Budget& budget, const std::string& name, const Value& operand,
                               const CallArgs& args) {
  const auto& tests = Tests();
  const auto it = tests.find(name);
  if (it == tests.end())
    return absl::InvalidArgumentError(absl::StrCat("no test named '", name, "'"));
  RETURN_IF_ERROR(budget.Step());
  return it->second(budget, operand, args);
}

}  // namespace iquest::jinja
