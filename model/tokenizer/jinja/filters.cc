// jinja2's built-in filters (jinja2/filters.py), with tojson replaced by transformers'
// json.dumps(ensure_ascii=False) version.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/jinja/builtins.h"
#include "model/tokenizer/jinja/text.h"

namespace iquest::jinja {
namespace {

using FilterFn = std::function<absl::StatusOr<Value>(Budget&, const Value&, const CallArgs&)>;

absl::StatusOr<int64_t> IntArg(const CallArgs& args, size_t index, const char* name,
                               int64_t default_value) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || v->is_none()) return default_value;
  if (v->is_int()) return v->as_int();
  if (v->is_bool()) return static_cast<int64_t>(v->as_bool());
  return absl::InvalidArgumentError(absl::StrCat("'", name, "' must be an integer"));
}

bool BoolArg(const CallArgs& args, size_t index, const char* name, bool default_value) {
  const Value* v = args.Get(index, name);
  return v == nullptr ? default_value : v->Truthy();
}

// `attribute="a.b.0"` as jinja's make_attrgetter follows it.
absl::StatusOr<Value> GetPath(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    ASSIGN_OR_RETURN(current, numeric
                                  ? GetItem(current, Value(static_cast<int64_t>(std::stoll(part))))
                                  : GetItem(current, Value(part)));
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

absl::StatusOr<Value> Length(const Value& v) {
  if (v.is_string()) return Value(static_cast<int64_t>(text::Decode(v.as_string()).size()));
  if (v.is_list()) return Value(static_cast<int64_t>(v.as_list().items.size()));
  if (v.is_dict()) return Value(static_cast<int64_t>(v.as_dict().items.size()));
  if (v.is_undefined()) return Value(int64_t{0});
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
}

absl::StatusOr<Value> Join(Budget& budget, const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("join", 2, {"d", "attribute"}));
  const Value* sep = args.Get(0, "d");
  const Value* attribute = args.Get(1, "attribute");
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0 && sep != nullptr) out += sep->Str();
    Value item = items[i];
    if (attribute != nullptr) {
      ASSIGN_OR_RETURN(item, GetPath(item, attribute->Str()));
    }
    out += item.Str();
    RETURN_IF_ERROR(budget.CheckSize(out.size()));
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> ToJsonFilter(Budget& budget, const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("tojson", 4, {"ensure_ascii", "indent", "separators", "sort_keys"}));
  const Value* indent = args.Get(1, "indent");
  int64_t width = -1;
  if (indent != nullptr && !indent->is_none()) {
    if (!indent->is_int()) return absl::InvalidArgumentError("tojson: indent must be an integer");
    width = std::max<int64_t>(0, std::min<int64_t>(indent->as_int(), 64));
  }
  std::pair<std::string, std::string> separators;
  const Value* sep = args.Get(2, "separators");
  const bool has_separators = sep != nullptr && !sep->is_none();
  if (has_separators) {
    if (!sep->is_list() || sep->as_list().items.size() != 2 ||
        !sep->as_list().items[0].is_string() || !sep->as_list().items[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be two strings");
    }
    separators = {sep->as_list().items[0].as_string(), sep->as_list().items[1].as_string()};
  }
  ASSIGN_OR_RETURN(
      std::string json,
      ToJson(v, static_cast<int>(width), BoolArg(args, 3, "sort_keys", false),
             has_separators ? &separators : nullptr, BoolArg(args, 0, "ensure_ascii", false)));
  RETURN_IF_ERROR(budget.CheckSize(json.size()));
  return Value(std::move(json));
}

// Key for sort/unique: strings lowercased unless case_sensitive, as jinja's ignore_case.
absl::StatusOr<Value> SortKey(const Value& item, const Value* attribute, bool case_sensitive) {
  Value key = item;
  if (attribute != nullptr) {
    ASSIGN_OR_RETURN(key, GetPath(item, attribute->Str()));
  }
  if (!case_sensitive && key.is_string()) return Value(text::Lower(key.as_string()));
  return key;
}

absl::StatusOr<Value> Sort(Budget& budget, const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("sort", 3, {"reverse", "case_sensitive", "attribute"}));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  RETURN_IF_ERROR(budget.Step(static_cast<int64_t>(items.size())));
  const bool reverse = BoolArg(args, 0, "reverse", false);
  const bool case_sensitive = BoolArg(args, 1, "case_sensitive", false);
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, args.Get(2, "attribute"), case_sensitive));
    keyed.emplace_back(std::move(key), std::move(item));
  }
  absl::Status status;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    absl::StatusOr<bool> less = reverse ? LessThan(b.first, a.first) : LessThan(a.first, b.first);
    if (!less.ok()) {
      status.Update(less.status());
      return false;
    }
    return *less;
  });
  RETURN_IF_ERROR(status);
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Unique(Budget& budget, const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("unique", 2, {"case_sensitive", "attribute"}));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  RETURN_IF_ERROR(budget.Step(static_cast<int64_t>(items.size() * items.size() / 16 + 1)));
  std::vector<Value> seen;
  std::vector<Value> out;
  for (Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, args.Get(1, "attribute"),
                                        BoolArg(args, 0, "case_sensitive", false)));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      continue;
    }
    seen.push_back(std::move(key));
    out.push_back(std::move(item));
  }
  return Value::List(std::move(out));
}

// select/reject/selectattr/rejectattr: `by_attribute` takes the attribute first; the test
// (default: truthiness) and its arguments follow.
absl::StatusOr<Value> Select(Budget& budget, const Value& v, const CallArgs& args,
                             bool by_attribute, bool keep) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  size_t next = 0;
  const Value* attribute = nullptr;
  if (by_attribute) {
    if (args.args.empty()) return absl::InvalidArgumentError("selectattr needs an attribute");
    attribute = &args.args[next++];
  }
  const Value* test = next < args.args.size() ? &args.args[next++] : nullptr;
  CallArgs test_args;
  test_args.args.assign(args.args.begin() + static_cast<ptrdiff_t>(next), args.args.end());
  std::vector<Value> out;
  for (const Value& item : items) {
    RETURN_IF_ERROR(budget.Step());
    Value subject = item;
    if (attribute != nullptr) {
      ASSIGN_OR_RETURN(subject, GetPath(item, attribute->Str()));
    }
    bool passed = subject.Truthy();
    if (test != nullptr) {
      ASSIGN_OR_RETURN(passed, ApplyTest(budget, test->Str(), subject, test_args));
    }
    if (passed == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Map(Budget& budget, const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::vector<Value> out;
  if (const Value* attribute = args.Get(99, "attribute"); attribute != nullptr) {
    const Value* default_value = args.Get(99, "default");
    for (const Value& item : items) {
      RETURN_IF_ERROR(budget.Step());
      ASSIGN_OR_RETURN(Value got, GetPath(item, attribute->Str()));
      if (got.is_undefined() && default_value != nullptr) got = *default_value;
      out.push_back(std::move(got));
    }
    return Value::List(std::move(out));
  }
  if (args.args.empty()) return absl::InvalidArgumentError("map needs a filter or attribute=");
  CallArgs filter_args;
  filter_args.args.assign(args.args.begin() + 1, args.args.end());
  filter_args.kwargs = args.kwargs;
  for (const Value& item : items) {
    RETURN_IF_ERROR(budget.Step());
    ASSIGN_OR_RETURN(Value mapped, ApplyFilter(budget, args.args[0].Str(), item, filter_args));
    out.push_back(std::move(mapped));
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Indent(Budget& budget, const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("indent", 3, {"width", "first", "blank"}));
  std::string indentation;
  const Value* width = args.Get(0, "width");
  if (width != nullptr && width->is_string()) {
    indentation = width->as_string();
  } else {
    ASSIGN_OR_RETURN(int64_t n, IntArg(args, 0, "width", 4));
    indentation.assign(static_cast<size_t>(std::clamp<int64_t>(n, 0, 256)), ' ');
  }
  const std::vector<std::string> lines = text::SplitLines(v.Str() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (BoolArg(args, 2, "blank", false) || !lines[i].empty()) out += indentation;
    }
    out += lines[i];
    RETURN_IF_ERROR(budget.CheckSize(out.size()));
  }
  if (BoolArg(args, 1, "first", false)) out = indentation + out;
  return Value(std::move(out));
}

absl::StatusOr<Value> Items(const Value& v) {
  if (v.is_undefined()) return Value::List();
  if (!v.is_dict())
    return absl::InvalidArgumentError("items: can only get item pairs from a mapping");
  std::vector<Value> out;
  for (const auto& [key, value] : v.as_dict().items) {
    out.push_back(Value::List({Value(key), value}, /*is_tuple=*/true));
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> ToInt(const Value& v, const CallArgs& args) {
  const Value* fallback = args.Get(0, "default");
  const Value default_value = fallback == nullptr ? Value(int64_t{0}) : *fallback;
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(static_cast<int64_t>(v.as_bool()));
  if (v.is_float()) {
    if (!std::isfinite(v.as_float())) return default_value;
    return Value(static_cast<int64_t>(std::trunc(v.as_float())));
  }
  if (v.is_string()) {
    const std::string s = text::Strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end == s.c_str() + s.size() && errno == 0) return Value(int64_t{i});
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) {
      return Value(static_cast<int64_t>(std::trunc(d)));
    }
  }
  return default_value;
}

absl::StatusOr<Value> ToFloat(const Value& v, const CallArgs& args) {
  const Value* fallback = args.Get(0, "default");
  const Value default_value = fallback == nullptr ? Value(0.0) : *fallback;
  if (v.is_number() || v.is_bool()) return Value(v.as_double());
  if (v.is_string()) {
    const std::string s = text::Strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size()) return Value(d);
  }
  return default_value;
}

absl::StatusOr<Value> Round(const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("round", 2, {"precision", "method"}));
  ASSIGN_OR_RETURN(int64_t precision, IntArg(args, 0, "precision", 0));
  const Value* method = args.Get(1, "method");
  const std::string how = method == nullptr ? "common" : method->Str();
  if (!v.is_number() && !v.is_bool()) return absl::InvalidArgumentError("round: not a number");
  if (how == "common") {
    // Python's round: an int stays an int; a float is rounded on its exact binary value, halves
    // to even, which printf's correctly rounded %.*f does too (2.675 -> 2.67).
    if (v.is_int() || v.is_bool()) return v.is_int() ? v : Value(static_cast<int64_t>(v.as_bool()));
    if (precision >= 0 && precision <= 20 && std::fabs(v.as_float()) < 1e300) {
      char buf[512];
      std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), v.as_float());
      return Value(std::strtod(buf, nullptr));
    }
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (how == "common") {
    r = std::nearbyint(x);
  } else if (how == "ceil") {
    r = std::ceil(x);
  } else if (how == "floor") {
    r = std::floor(x);
  } else {
    return absl::InvalidArgumentError("round: method must be 'common', 'ceil' or 'floor'");
  }
  return Value(r / scale);
}

absl::StatusOr<Value> FirstOrLast(const Value& v, bool first) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) {
    return Value(Undefined{first ? "No first item, sequence was empty."
                                 : "No last item, sequence was empty."});
  }
  return first ? items.front() : items.back();
}

absl::StatusOr<Value> Reverse(const Value& v) {
  if (v.is_string()) {
    std::u32string cps = text::Decode(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value(text::Encode(cps));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

absl::StatusOr<Value> MinMax(Budget& budget, const Value& v, const CallArgs& args, bool max) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  RETURN_IF_ERROR(budget.Step(static_cast<int64_t>(items.size())));
  const Value* attribute = args.Get(1, "attribute");
  const bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
  if (items.empty()) return Value(Undefined{"No aggregated item, sequence was empty."});
  size_t best = 0;
  ASSIGN_OR_RETURN(Value best_key, SortKey(items[0], attribute, case_sensitive));
  for (size_t i = 1; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value key, SortKey(items[i], attribute, case_sensitive));
    ASSIGN_OR_RETURN(bool better, max ? LessThan(best_key, key) : LessThan(key, best_key));
    if (better) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

absl::StatusOr<Value> Sum(Budget& budget, const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  RETURN_IF_ERROR(budget.Step(static_cast<int64_t>(items.size())));
  const Value* attribute = args.Get(0, "attribute");
  const Value* start = args.Get(1, "start");
  Value total = start == nullptr ? Value(int64_t{0}) : *start;
  for (const Value& item : items) {
    Value x = item;
    if (attribute != nullptr) {
      ASSIGN_OR_RETURN(x, GetPath(item, attribute->Str()));
    }
    if (!(x.is_number() || x.is_bool()) || !(total.is_number() || total.is_bool())) {
      return absl::InvalidArgumentError("sum: items must be numbers");
    }
    if (total.is_float() || x.is_float()) {
      total = Value(total.as_double() + x.as_double());
    } else {
      total = Value((total.is_bool() ? total.as_bool() : total.as_int()) +
                    (x.is_bool() ? x.as_bool() : x.as_int()));
    }
  }
  return total;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> DictSort(const Value& v, const CallArgs& args) {
  RETURN_IF_ERROR(args.Check("dictsort", 3, {"case_sensitive", "by", "reverse"}));
  if (!v.is_dict()) return absl::InvalidArgumentError("dictsort: not a mapping");
  const bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
  const Value* by = args.Get(1, "by");
  const bool by_value = by != nullptr && by->Str() == "value";
  const bool reverse = BoolArg(args, 2, "reverse", false);
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [key, value] : v.as_dict().items) {
    ASSIGN_OR_RETURN(Value sort_key,
                     SortKey(by_value ? value : Value(key), nullptr, case_sensitive));
    keyed.emplace_back(std::move(sort_key), Value::List({Value(key), value}, true));
  }
  absl::Status status;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    absl::StatusOr<bool> less = reverse ? LessThan(b.first, a.first) : LessThan(a.first, b.first);
    if (!less.ok()) status.Update(less.status());
    return less.ok() && *less;
  });
  RETURN_IF_ERROR(status);
  std::vector<Value> out;
  for (auto& [key, pair] : keyed) out.push_back(std::move(pair));
  return Value::List(std::move(out));
}

const absl::flat_hash_map<std::string, FilterFn>& Filters() {
  static const auto* filters = new absl::flat_hash_map<std::string, FilterFn>{
      {"tojson", ToJsonFilter},
      {"join", Join},
      {"sort", Sort},
      {"unique", Unique},
      {"map", Map},
      {"indent", Indent},
      {"select",
       [](Budget& b, const Value& v, const CallArgs& a) { return Select(b, v, a, false, true); }},
      {"reject",
       [](Budget& b, const Value& v, const CallArgs& a) { return Select(b, v, a, false, false); }},
      {"selectattr",
       [](Budget& b, const Value& v, const CallArgs& a) { return Select(b, v, a, true, true); }},
      {"rejectattr",
       [](Budget& b, const Value& v, const CallArgs& a) { return Select(b, v, a, true, false); }},
      {"min", [](Budget& b, const Value& v, const CallArgs& a) { return MinMax(b, v, a, false); }},
      {"max", [](Budget& b, const Value& v, const CallArgs& a) { return MinMax(b, v, a, true); }},
      {"sum", Sum},
      {"length", [](Budget&, const Value& v, const CallArgs&) { return Length(v); }},
      {"count", [](Budget&, const Value& v, const CallArgs&) { return Length(v); }},
      {"items", [](Budget&, const Value& v, const CallArgs&) { return Items(v); }},
      {"dictsort", [](Budget&, const Value& v, const CallArgs& a) { return DictSort(v, a); }},
      {"int", [](Budget&, const Value& v, const CallArgs& a) { return ToInt(v, a); }},
      {"float", [](Budget&, const Value& v, const CallArgs& a) { return ToFloat(v, a); }},
      {"round", [](Budget&, const Value& v, const CallArgs& a) { return Round(v, a); }},
      {"first", [](Budget&, const Value& v, const CallArgs&) { return FirstOrLast(v, true); }},
      {"last", [](Budget&, const Value& v, const CallArgs&) { return FirstOrLast(v, false); }},
      {"reverse", [](Budget&, const Value& v, const CallArgs&) { return Reverse(v); }},
      {"list",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
         return Value::List(std::move(items));
       }},
      {"default",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* fallback = a.Get(0, "default_value");
         const bool use = v.is_undefined() || (BoolArg(a, 1, "boolean", false) && !v.Truthy());
         if (!use) return v;
         return fallback == nullptr ? Value(std::string()) : *fallback;
       }},
      {"trim",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         const Value* chars = a.Get(0, "chars");
         const std::string set = chars == nullptr || chars->is_none() ? "" : chars->Str();
         return Value(text::Strip(v.Str(), chars == nullptr || chars->is_none() ? nullptr : &set,
                                  true, true));
       }},
      {"upper",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value(text::Upper(v.Str()));
       }},
      {"lower",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value(text::Lower(v.Str()));
       }},
      {"capitalize",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value(text::Capitalize(v.Str()));
       }},
      {"title",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         // jinja's title: each word after spaces and - ( { [ < is capitalized.
         const std::u32string cps = text::Decode(v.Str());
         std::u32string word;
         std::string out;
         for (char32_t cp : cps) {
           const bool sep =
               text::IsSpace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
           if (sep) {
             out += text::Capitalize(text::Encode(word));
             word.clear();
             out += text::Encode(std::u32string(1, cp));
           } else {
             word.push_back(cp);
           }
         }
         out += text::Capitalize(text::Encode(word));
         return Value(std::move(out));
       }},
      {"replace",
       [](Budget& b, const Value& v, const CallArgs& a) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(a.Check("replace", 3, {"old", "new", "count"}));
         const Value* old = a.Get(0, "old");
         const Value* with = a.Get(1, "new");
         if (old == nullptr || with == nullptr)
           return absl::InvalidArgumentError("replace needs 2 arguments");
         ASSIGN_OR_RETURN(int64_t count, IntArg(a, 2, "count", -1));
         std::string out = text::Replace(v.Str(), old->Str(), with->Str(), count);
         RETURN_IF_ERROR(b.CheckSize(out.size()));
         return Value(std::move(out));
       }},
      {"string",
       [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> {
         return Value(v.Str());
       }},
      {"safe", [](Budget&, const Value& v, const CallArgs&) -> absl::StatusOr<Value> { return v; }},
      {"escape",
       [](Budget&, const Value& v,
          const CallArgs&) -> absl::StatusOr<Value> { return Value(Escape(v.Str())); }},
      {"e",
       [](Budget&, const Value& v,
          const CallArgs&) -> absl::StatusOr<Value> { return Value(Escape(v.Str())); }},
      {"abs",
       [](Budget&, const Value& v,
          const CallArgs&) -> absl::
                               StatusOr<Value> {
                                 if (v.is_int())
                                   return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
                                 if (v.is_float()) return Value(std::fabs(v.as_float()));
                                 if (v.is_bool()) return Value(static_cast<int64_t>(v.as_bool()));
                                 return absl::InvalidArgumentError(absl::StrCat(
                                     "bad operand type for abs(): '", v.TypeName(), "'"));
                               }},
      {"wordcount",
       [](Budget&, const Value& v, const CallArgs&)
           -> absl::
               StatusOr<Value> {
                 int64_t words = 0;
                 bool in_word = false;
                 for (char32_t cp : text::Decode(v.Str())) {
                   const bool w = cp == '_' || (cp < 0x80 ? std::isalnum(static_cast<int>(cp)) != 0
                                                          : !text::IsSpace(cp));
                   if (w && !in_word) ++words;
                   in_word = w;
                 }
                 return Value(words);
               }},
      {"attr",
       [](Budget&, const Value& v, const CallArgs& a) -> absl::
                                                          StatusOr<Value> {
                                                            const Value* name = a.Get(0, "name");
                                                            if (name == nullptr)
                                                              return absl::InvalidArgumentError(
                                                                  "attr needs a name");
                                                            return GetAttribute(v, name->Str());
                                                          }},
  };
  return *filters;
}

}  // namespace

absl::StatusOr<Value> ApplyFilter(Budget& budget, const std::string& name, const Value& operand,
                                  const CallArgs& args) {
  const auto& filters = Filters();
  std::string key = name == "d" ? "default" : name;
  const auto it = filters.find(key);
  if (it == filters.end())
    return absl::InvalidArgumentError(absl::StrCat("no filter named '", name, "'"));
  RETURN_IF_ERROR(budget.Step());
  return it->second(budget, operand, args);
}

}  // namespace iquest::jinja
