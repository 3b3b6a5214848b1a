// The values a Jinja chat template computes with: Python's None/bool/int/float/str/list/dict,
// jinja2's Undefined, namespace() objects and callables (macros, globals, bound methods).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace iquest::jinja {

class Value;
struct CallArgs;

// Lists and dicts are shared, as in Python: `set ns.x` and an alias of a list see one object.
struct ValueList {
  std::vector<Value> items;
  bool is_tuple = false;  // Only changes how it prints: (1, 2).
};

// Insertion-ordered, as Python's dict is; tojson (sort_keys=False) writes keys in this order.
// Keys are strings: the JSON a chat template receives has no other kind.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): the only object `set obj.attr = ...` may change.

  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);
};

using NativeFunction = std::function<absl::StatusOr<Value>(CallArgs& args)>;

struct Callable {
  std::string name;  // For error messages.
  NativeFunction fn;
};

// jinja2's default Undefined: prints as "", iterates as empty, is falsy; most other uses fail
// with `hint` ("'x' is undefined", "'dict object' has no attribute 'y'").
struct Undefined {
  std::string hint;
};

struct None {};

class Value {
 public:
  using Storage =
      std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<ValueList>,
                   std::shared_ptr<ValueDict>, std::shared_ptr<Callable>>;

  Value() = default;
  Value(Undefined u) : v_(std::move(u)) {}                   // NOLINT: implicit by design.
  Value(None) : v_(None{}) {}                                // NOLINT
  Value(bool b) : v_(b) {}                                   // NOLINT
  Value(int64_t i) : v_(i) {}                                // NOLINT
  Value(int i) : v_(static_cast<int64_t>(i)) {}              // NOLINT
  Value(double d) : v_(d) {}                                 // NOLINT
  Value(std::string s) : v_(std::move(s)) {}                 // NOLINT
  Value(const char* s) : v_(std::string(s)) {}               // NOLINT
  Value(std::shared_ptr<ValueList> l) : v_(std::move(l)) {}  // NOLINT
  Value(std::shared_ptr<ValueDict> d) : v_(std::move(d)) {}  // NOLINT
  Value(std::shared_ptr<Callable> c) : v_(std::move(c)) {}   // NOLINT

  static Value List(std::vector<Value> items = {}, bool is_tuple = false);
  static Value Dict();
  static Value Function(std::string name, NativeFunction fn);
  static Value FromJson(const nlohmann::ordered_json& json);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<None>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float(); }  // Python: bool is an int too.
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_list() const { return std::holds_alternative<std::shared_ptr<ValueList>>(v_); }
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<ValueDict>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Callable>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // Numbers (and bools, as Python has it) as a double.
  double as_double() const;
  const std::string& as_string() const { return std::get<std::string>(v_); }
  ValueList& as_list() const { return *std::get<std::shared_ptr<ValueList>>(v_); }
  ValueDict& as_dict() const { return *std::get<std::shared_ptr<ValueDict>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<Callable>>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

  // Python's truth value.
  bool Truthy() const;
  // str(x) as jinja prints it: None -> "None", True -> "True", lists and dicts as repr.
  std::string Str() const;
  // repr(x): strings quoted the way Python quotes them.
  std::string Repr() const;
  // Python's type name in jinja's messages: "str", "dict", "list", ...
  std::string TypeName() const;

 private:
  Storage v_;
};

// Python's ==, across int/float/bool; lists and dicts compare deeply.
bool Equals(const Value& a, const Value& b);

// Python's <: numbers with numbers, strings with strings, lists lexicographically. Anything else
// is an error ("'<' not supported between instances of 'str' and 'int'").
absl::StatusOr<bool> LessThan(const Value& a, const Value& b);

// repr() of a Python float: the shortest round-trip digits, "1.0", "1e+20", "1e-05", "inf".
std::string FloatRepr(double d);

// json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
// sort_keys=sort_keys), as transformers' tojson filter calls it (indent < 0 and null separators
// mean None). Undefined and callables are errors.
absl::StatusOr<std::string> ToJson(const Value& value, int indent, bool sort_keys,
                                   const std::pair<std::string, std::string>* separators = nullptr,
                                   bool ensure_ascii = false);

}  // namespace iquest::jinja
