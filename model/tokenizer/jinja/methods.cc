// Attribute and item access under jinja's ImmutableSandboxedEnvironment, the str/dict/list
// methods templates call, and the globals.
#include <ctime>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/jinja/builtins.h"
#include "model/tokenizer/jinja/text.h"

namespace iquest::jinja {
namespace {

constexpr char kRaisedPayload[] = "iquest.jinja/raised";

absl::StatusOr<std::string> StringArg(const CallArgs& args, size_t index, const char* name) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || !v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("argument '", name, "' must be a string"));
  }
  return v->as_string();
}

int64_t IntOr(const CallArgs& args, size_t index, const char* name, int64_t default_value) {
  const Value* v = args.Get(index, name);
  return v != nullptr && v->is_int() ? v->as_int() : default_value;
}

// Python's index normalization for one position of a slice or an index.
int64_t Normalize(int64_t index, int64_t size) { return index < 0 ? index + size : index; }

// startswith/endswith accept a string or a tuple of strings.
absl::StatusOr<Value> AffixTest(const std::string& s, const CallArgs& args, bool prefix) {
  RETURN_IF_ERROR(args.Check(prefix ? "startswith" : "endswith", 1));
  const Value* arg = args.Get(0, "prefix");
  if (arg == nullptr) return absl::InvalidArgumentError("startswith/endswith need an argument");
  std::vector<Value> options = arg->is_list() ? arg->as_list().items : std::vector<Value>{*arg};
  for (const Value& option : options) {
    if (!option.is_string()) return absl::InvalidArgumentError("startswith/endswith need strings");
    const std::string& a = option.as_string();
    if (a.size() <= s.size() && (prefix ? s.compare(0, a.size(), a) == 0
                                        : s.compare(s.size() - a.size(), a.size(), a) == 0)) {
      return Value(true);
    }
  }
  return Value(false);
}

absl::StatusOr<Value> ListOfStrings(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& part : parts) items.emplace_back(std::move(part));
  return Value::List(std::move(items));
}

// str.format with {} / {0} / {name} fields, enough for the templates that use it.
absl::StatusOr<Value> Format(const std::string& s, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{' && i + 1 < s.size() && s[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (s[i] == '}' && i + 1 < s.size() && s[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (s[i] == '{') {
      const size_t close = s.find('}', i);
      if (close == std::string::npos) return absl::InvalidArgumentError("format: unmatched '{'");
      const std::string field = s.substr(i + 1, close - i - 1);
      const Value* v = nullptr;
      if (field.empty()) {
        v = auto_index < args.args.size() ? &args.args[auto_index++] : nullptr;
      } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
        const size_t index = std::stoul(field);
        v = index < args.args.size() ? &args.args[index] : nullptr;
      } else {
        v = args.Get(SIZE_MAX, field);
      }
      if (v == nullptr)
        return absl::InvalidArgumentError(absl::StrCat("format: no value for {", field, "}"));
      out += v->Str();
      i = close;
    } else {
      out += s[i];
    }
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> CallStringMethod(const std::string& s, const std::string& name,
                                       const CallArgs& args) {
  const Value* chars_arg = args.Get(0, "chars");
  const bool has_chars = chars_arg != nullptr && !chars_arg->is_none();
  const std::string chars = has_chars ? chars_arg->Str() : "";
  if (name == "strip") return Value(text::Strip(s, has_chars ? &chars : nullptr, true, true));
  if (name == "lstrip") return Value(text::Strip(s, has_chars ? &chars : nullptr, true, false));
  if (name == "rstrip") return Value(text::Strip(s, has_chars ? &chars : nullptr, false, true));
  if (name == "startswith") return AffixTest(s, args, true);
  if (name == "endswith") return AffixTest(s, args, false);
  if (name == "upper") return Value(text::Upper(s));
  if (name == "lower") return Value(text::Lower(s));
  if (name == "title") return Value(text::Title(s));
  if (name == "capitalize") return Value(text::Capitalize(s));
  if (name == "split" || name == "rsplit") {
    const Value* sep = args.Get(0, "sep");
    const std::string sep_text = sep != nullptr && !sep->is_none() ? sep->Str() : "";
    if (sep != nullptr && !sep->is_none() && sep_text.empty()) {
      return absl::InvalidArgumentError("empty separator");
    }
    const int64_t maxsplit = IntOr(args, 1, "maxsplit", -1);
    const std::string* sep_ptr = sep != nullptr && !sep->is_none() ? &sep_text : nullptr;
    if (name == "split" || maxsplit < 0) return ListOfStrings(text::Split(s, sep_ptr, maxsplit));
    // rsplit with a limit: split fully, then glue the leading parts back.
    std::vector<std::string> parts = text::Split(s, sep_ptr, -1);
    if (static_cast<int64_t>(parts.size()) <= maxsplit + 1) return ListOfStrings(std::move(parts));
    const size_t keep = parts.size() - static_cast<size_t>(maxsplit);
    std::string head;
    for (size_t i = 0; i < keep; ++i) head += (i > 0 ? (sep_ptr ? sep_text : " ") : "") + parts[i];
    std::vector<std::string> out = {head};
    out.insert(out.end(), parts.begin() + static_cast<ptrdiff_t>(keep), parts.end());
    return ListOfStrings(std::move(out));
  }
  if (name == "splitlines") return ListOfStrings(text::SplitLines(s));
  if (name == "replace") {
    ASSIGN_OR_RETURN(std::string old, StringArg(args, 0, "old"));
    ASSIGN_OR_RETURN(std::string with, StringArg(args, 1, "new"));
    return Value(text::Replace(s, old, with, IntOr(args, 2, "count", -1)));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    ASSIGN_OR_RETURN(std::string sub, StringArg(args, 0, "sub"));
    const size_t byte = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (byte == std::string::npos) {
      if (name.find("index") != std::string::npos)
        return absl::InvalidArgumentError("substring not found");
      return Value(int64_t{-1});
    }
    return Value(static_cast<int64_t>(text::Decode(s.substr(0, byte)).size()));
  }
  if (name == "count") {
    ASSIGN_OR_RETURN(std::string sub, StringArg(args, 0, "sub"));
    return Value(text::Count(s, sub));
  }
  if (name == "join") {
    const Value* items = args.Get(0, "iterable");
    if (items == nullptr) return absl::InvalidArgumentError("join needs an argument");
    ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(*items));
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].is_string()) return absl::InvalidArgumentError("join: items must be strings");
      if (i > 0) out += s;
      out += parts[i].as_string();
    }
    return Value(std::move(out));
  }
  if (name == "format") return Format(s, args);
  if (name == "removeprefix" || name == "removesuffix") {
    ASSIGN_OR_RETURN(std::string affix, StringArg(args, 0, "affix"));
    if (name == "removeprefix" && s.compare(0, affix.size(), affix) == 0)
      return Value(s.substr(affix.size()));
    if (name == "removesuffix" && affix.size() <= s.size() &&
        s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
      return Value(s.substr(0, s.size() - affix.size()));
    }
    return Value(s);
  }
  const std::u32string cps = text::Decode(s);
  const auto all = [&](auto pred) {
    return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred);
  };
  if (name == "isspace") return Value(all([](char32_t c) { return text::IsSpace(c); }));
  if (name == "isdigit") return Value(all([](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha")
    return Value(all([](char32_t c) { return c < 0x80 && std::isalpha(static_cast<int>(c)); }));
  if (name == "isalnum")
    return Value(all([](char32_t c) { return c < 0x80 && std::isalnum(static_cast<int>(c)); }));
  if (name == "islower") return Value(text::Lower(s) == s && text::Upper(s) != s);
  if (name == "isupper") return Value(text::Upper(s) == s && text::Lower(s) != s);
  return absl::InvalidArgumentError(absl::StrCat("'str' object has no attribute '", name, "'"));
}

absl::StatusOr<Value> CallDictMethod(const Value& obj, const std::string& name,
                                     const CallArgs& args) {
  const ValueDict& dict = obj.as_dict();
  if (name == "get") {
    const Value* key = args.Get(0, "key");
    const Value* fallback = args.Get(1, "default");
    if (key == nullptr) return absl::InvalidArgumentError("get needs a key");
    const Value* found = key->is_string() ? dict.Find(key->as_string()) : nullptr;
    if (found != nullptr) return *found;
    return fallback == nullptr ? Value(None{}) : *fallback;
  }
  std::vector<Value> out;
  for (const auto& [key, value] : dict.items) {
    if (name == "keys") out.emplace_back(key);
    if (name == "values") out.push_back(value);
    if (name == "items") out.push_back(Value::List({Value(key), value}, /*is_tuple=*/true));
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> CallListMethod(const Value& obj, const std::string& name,
                                     const CallArgs& args) {
  const Value* x = args.Get(0, "x");
  if (x == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, " needs an argument"));
  const auto& items = obj.as_list().items;
  int64_t count = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!Equals(items[i], *x)) continue;
    if (name == "index") return Value(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") return absl::InvalidArgumentError("list.index(x): x not in list");
  return Value(count);
}

bool IsStringMethod(const std::string& name) {
  static const char* const kNames[] = {
      "strip",   "lstrip",  "rstrip",       "startswith",   "endswith", "upper",
      "lower",   "title",   "capitalize",   "split",        "rsplit",   "splitlines",
      "replace", "find",    "rfind",        "index",        "rindex",   "count",
      "join",    "format",  "removeprefix", "removesuffix", "isspace",  "isdigit",
      "isalpha", "isalnum", "islower",      "isupper"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

Value BindMethod(const Value& obj, const std::string& name,
                 absl::StatusOr<Value> (*method)(const Value&, const std::string&,
                                                 const CallArgs&)) {
  return Value::Function(name,
                         [obj, name, method](CallArgs& args) { return method(obj, name, args); });
}

absl::Status Unsafe(const Value& obj, const std::string& name) {
  return absl::PermissionDeniedError(
      absl::StrCat("access to attribute '", name, "' of '", obj.TypeName(), "' object is unsafe."));
}

absl::StatusOr<Value> Range(Budget* budget, CallArgs& args) {
  RETURN_IF_ERROR(args.Check("range", 3));
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < args.args.size(); ++i) {
    if (!args.args[i].is_int()) return absl::InvalidArgumentError("range() needs integers");
  }
  if (args.args.empty()) return absl::InvalidArgumentError("range expected at least 1 argument");
  if (args.args.size() == 1) {
    bounds[1] = args.args[0].as_int();
  } else {
    for (size_t i = 0; i < args.args.size(); ++i) bounds[i] = args.args[i].as_int();
  }
  if (bounds[2] == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  const double span = (static_cast<double>(bounds[1]) - static_cast<double>(bounds[0])) /
                      static_cast<double>(bounds[2]);
  const int64_t n = span <= 0 ? 0 : static_cast<int64_t>(std::ceil(span));
  // Charged up front: a huge range fails here rather than allocating.
  RETURN_IF_ERROR(budget->Step(n));
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) items.emplace_back(bounds[0] + i * bounds[2]);
  return Value::List(std::move(items));
}

Value KwargsDict(const CallArgs& args, bool is_namespace, Budget* budget) {
  auto ns = std::make_shared<ValueDict>();
  if (is_namespace) budget->TrackNamespace(ns);
  Value dict(std::move(ns));
  dict.as_dict().is_namespace = is_namespace;
  for (const Value& arg : args.args) {  // namespace({...}) / dict({...}) copy a mapping.
    if (!arg.is_dict()) continue;
    for (const auto& [key, value] : arg.as_dict().items) dict.as_dict().Set(key, value);
  }
  for (const auto& [key, value] : args.kwargs) dict.as_dict().Set(key, value);
  return dict;
}

}  // namespace

const Value* CallArgs::Get(size_t index, std::string_view name) const {
  if (index < args.size()) return &args[index];
  for (const auto& [key, value] : kwargs) {
    if (key == name) return &value;
  }
  return nullptr;
}

absl::Status CallArgs::Check(const char* function, size_t max_positional,
                             std::initializer_list<const char*> names) const {
  if (args.size() > max_positional) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, "() takes at most ", max_positional, " positional argument(s)"));
  }
  for (const auto& kwarg : kwargs) {
    const std::string& key = kwarg.first;  // Not a structured binding: clang 14 cannot capture one.
    if (std::find_if(names.begin(), names.end(), [&](const char* n) { return key == n; }) ==
        names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, "() got an unexpected keyword argument '", key, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status Budget::Step(int64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "template ran for more than ", limits_.max_steps, " steps (an endless loop?)"));
  }
  return absl::OkStatus();
}

absl::Status Budget::CheckSize(size_t bytes) const {
  if (static_cast<int64_t>(bytes) > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template output exceeds ", limits_.max_output_bytes, " bytes"));
  }
  return absl::OkStatus();
}

void Budget::ReleaseNamespaces() {
  for (const std::weak_ptr<ValueDict>& weak : namespaces_) {
    if (std::shared_ptr<ValueDict> ns = weak.lock()) ns->items.clear();
  }
  namespaces_.clear();
}

absl::Status TemplateRaised(std::string message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kRaisedPayload, absl::Cord("1"));
  return status;
}

bool IsTemplateRaised(const absl::Status& status) {
  return status.GetPayload(kRaisedPayload).has_value();
}

absl::StatusOr<Value> GetAttribute(const Value& obj, const std::string& name) {
  if (!name.empty() && name[0] == '_') return Unsafe(obj, name);
  if (obj.is_undefined()) return absl::InvalidArgumentError(obj.undefined_hint());
  if (obj.is_dict()) {
    if (!obj.as_dict().is_namespace) {
      if (name == "get" || name == "items" || name == "keys" || name == "values") {
        return BindMethod(obj, name, CallDictMethod);
      }
      if (name == "pop" || name == "popitem" || name == "update" || name == "setdefault" ||
          name == "clear") {
        return Unsafe(obj, name);
      }
    }
    if (const Value* found = obj.as_dict().Find(name); found != nullptr) return *found;
  } else if (obj.is_string()) {
    if (IsStringMethod(name)) {
      const std::string s = obj.as_string();
      return Value::Function(name,
                             [s, name](CallArgs& args) { return CallStringMethod(s, name, args); });
    }
  } else if (obj.is_list()) {
    if (name == "index" || name == "count") return BindMethod(obj, name, CallListMethod);
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
        name == "remove" || name == "sort" || name == "reverse" || name == "clear") {
      return Unsafe(obj, name);
    }
  }
  return Value(
      Undefined{absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'")});
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return absl::InvalidArgumentError(obj.undefined_hint());
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* found = obj.as_dict().Find(key.as_string()); found != nullptr) return *found;
      if (!key.as_string().empty() && key.as_string()[0] == '_') {
        return Value(Undefined{absl::StrCat("'", obj.TypeName(), " object' has no attribute '",
                                            key.as_string(), "'")});
      }
      return GetAttribute(obj, key.as_string());
    }
    return Value(
        Undefined{absl::StrCat("'", obj.TypeName(), " object' has no attribute ", key.Repr())});
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    const int64_t raw = key.is_int() ? key.as_int() : key.as_bool();
    if (obj.is_list()) {
      const auto& items = obj.as_list().items;
      const int64_t i = Normalize(raw, static_cast<int64_t>(items.size()));
      if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
    } else {
      const std::u32string cps = text::Decode(obj.as_string());
      const int64_t i = Normalize(raw, static_cast<int64_t>(cps.size()));
      if (i >= 0 && i < static_cast<int64_t>(cps.size())) {
        return Value(text::Encode(std::u32string(1, cps[static_cast<size_t>(i)])));
      }
    }
    return Value(Undefined{absl::StrCat("'", obj.TypeName(), " object' has no element ", raw)});
  }
  if (key.is_string()) return GetAttribute(obj, key.as_string());
  return Value(
      Undefined{absl::StrCat("'", obj.TypeName(), " object' has no element ", key.Repr())});
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  if (value.is_list()) return value.as_list().items;
  if (value.is_undefined()) return std::vector<Value>{};
  if (value.is_dict() && !value.as_dict().is_namespace) {
    std::vector<Value> keys;
    for (const auto& [key, v] : value.as_dict().items) keys.emplace_back(key);
    return keys;
  }
  if (value.is_string()) {
    std::vector<Value> chars;
    for (char32_t cp : text::Decode(value.as_string()))
      chars.emplace_back(text::Encode(std::u32string(1, cp)));
    return chars;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", value.TypeName(), "' object is not iterable"));
}

void AddGlobals(Budget* budget, ValueDict* globals) {
  globals->Set("range",
               Value::Function("range", [budget](CallArgs& args) { return Range(budget, args); }));
  globals->Set("namespace",
               Value::Function("namespace", [budget](CallArgs& args) -> absl::StatusOr<Value> {
                 return KwargsDict(args, /*is_namespace=*/true, budget);
               }));
  globals->Set("dict", Value::Function("dict", [budget](CallArgs& args) -> absl::StatusOr<Value> {
                 return KwargsDict(args, /*is_namespace=*/false, budget);
               }));
  globals->Set("raise_exception",
               Value::Function("raise_exception", [](CallArgs& args) -> absl::StatusOr<Value> {
                 const Value* message = args.Get(0, "message");
                 return TemplateRaised(message == nullptr ? "" : message->Str());
               }));
  globals->Set(
      "strftime_now", Value::Function("strftime_now", [](CallArgs& args) -> absl::StatusOr<Value> {
        const Value* format = args.Get(0, "format");
        if (format == nullptr || !format->is_string())
          return absl::InvalidArgumentError("strftime_now needs a format string");
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        char buf[256];
        const size_t n = std::strftime(buf, sizeof(buf), format->as_string().c_str(), &local);
        return Value(std::string(buf, n));
      }));
}

}  // namespace iquest::jinja
