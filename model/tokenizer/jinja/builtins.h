// jinja2's filters and tests, Python's str/dict/list methods and the globals chat templates
// call (range, namespace, dict, raise_exception, strftime_now), with the immutable sandbox's
// rules: no `_` attributes, no methods that modify a list or dict.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/jinja/jinja.h"
#include "model/tokenizer/jinja/value.h"

namespace iquest::jinja {

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;

  // The argument at position `index` or named `name`; null when not given.
  const Value* Get(size_t index, std::string_view name) const;
  // kInvalidArgument when more than `max_positional` positional arguments, or a keyword not in
  // `names`, were given to `function`.
  absl::Status Check(const char* function, size_t max_positional,
                     std::initializer_list<const char*> names = {}) const;
};

// The step and size budget one Render call draws on, and the namespace() objects it made.
class Budget {
 public:
  explicit Budget(const JinjaLimits& limits) : limits_(limits) {}
  const JinjaLimits& limits() const { return limits_; }
  absl::Status Step(int64_t steps = 1);
  absl::Status CheckSize(size_t bytes) const;

  void TrackNamespace(const std::shared_ptr<ValueDict>& ns) { namespaces_.push_back(ns); }
  // Empties every namespace made, breaking any reference cycle through them.
  void ReleaseNamespaces();

 private:
  JinjaLimits limits_;
  int64_t steps_ = 0;
  std::vector<std::weak_ptr<ValueDict>> namespaces_;
};

// The error raise_exception returns: its message is the template's, with no line prefixed.
absl::Status TemplateRaised(std::string message);
bool IsTemplateRaised(const absl::Status& status);

absl::StatusOr<Value> ApplyFilter(Budget& budget, const std::string& name, const Value& operand,
                                  const CallArgs& args);
absl::StatusOr<bool> ApplyTest(Budget& budget, const std::string& name, const Value& operand,
                               const CallArgs& args);

// `obj.name` as jinja's sandboxed getattr resolves it: dict keys, bound methods, or an
// Undefined naming what was missing. `_` names and mutating methods are errors.
absl::StatusOr<Value> GetAttribute(const Value& obj, const std::string& name);
// `obj[key]`: keys and indices first, then attributes, as jinja's getitem.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// The items a `for` loop (or list()) visits: list items, dict keys, string characters.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);

// The globals: range, namespace, dict, raise_exception, strftime_now.
void AddGlobals(Budget* budget, ValueDict* globals);

}  // namespace iquest::jinja
