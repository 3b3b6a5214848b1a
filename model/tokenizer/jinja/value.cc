// Python semantics for jinja values: truth, str/repr, equality, ordering and json.dumps.
#include "model/tokenizer/jinja/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/unicode.h"

namespace iquest::jinja {

const Value* ValueDict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ValueDict::Set(std::string key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

Value Value::List(std::vector<Value> items, bool is_tuple) {
  auto list = std::make_shared<ValueList>();
  list->items = std::move(items);
  list->is_tuple = is_tuple;
  return Value(std::move(list));
}

Value Value::Dict() { return Value(std::make_shared<ValueDict>()); }

Value Value::Function(std::string name, NativeFunction fn) {
  return Value(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

Value Value::FromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value(None{});
    case nlohmann::ordered_json::value_t::boolean:
      return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      // Beyond int64 a Python int would still be exact; a double is the closest we hold.
      if (json.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return Value(json.get<double>());
      }
      return Value(static_cast<int64_t>(json.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJson(item));
      return List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value dict = Dict();
      for (const auto& [key, item] : json.items()) dict.as_dict().Set(key, FromJson(item));
      return dict;
    }
    default:
      return Value(None{});
  }
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(as_int());
  if (is_bool()) return as_bool() ? 1.0 : 0.0;
  return as_float();
}

bool Value::Truthy() const {
  return std::visit(
      [](const auto& v) -> bool {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Undefined> || std::is_same_v<T, None>) {
          return false;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v;
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          return v != 0;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return !v.empty();
        } else if constexpr (std::is_same_v<T, std::shared_ptr<ValueList>> ||
                             std::is_same_v<T, std::shared_ptr<ValueDict>>) {
          return !v->items.empty();
        } else {
          return true;
        }
      },
      v_);
}

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  // The shortest digits that round-trip, which is what Python's repr picks too.
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, end);
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exp = std::stoi(sci.substr(e_pos + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + exp_buf;
}

namespace {

std::string StringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

void AppendJsonChar(unsigned char c, std::string* out);

void AppendJsonString(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  if (ensure_ascii) {  // Python writes each non-ASCII code point as \uXXXX (UTF-16 pairs).
    for (size_t pos = 0; pos < s.size();) {
      char32_t cp = 0;
      const size_t n = unicode::DecodeAt(s, pos, &cp);
      if (n == 0 || cp < 0x80) {
        AppendJsonChar(static_cast<unsigned char>(s[pos]), out);
        ++pos;
        continue;
      }
      pos += n;
      char buf[16];
      if (cp >= 0x10000) {
        const char32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      }
      *out += buf;
    }
    out->push_back('"');
    return;
  }
  for (unsigned char c : s) AppendJsonChar(c, out);
  out->push_back('"');
}

void AppendJsonChar(unsigned char c, std::string* out) {
  {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(static_cast<char>(c));  // ensure_ascii=False: UTF-8 passes through.
        }
    }
  }
}

struct JsonFormat {
  int indent;
  bool sort_keys;
  bool ensure_ascii;
  std::string item_sep;
  std::string key_sep;
};

absl::Status AppendJson(const Value& value, const JsonFormat& format, int depth, std::string* out) {
  const int indent = format.indent;
  if (depth > 512) return absl::InvalidArgumentError("tojson: value nested too deeply");
  const auto newline = [&](int level) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * level, ' ');
  };
  const std::string& item_sep = format.item_sep;
  if (value.is_none()) {
    *out += "null";
  } else if (value.is_bool()) {
    *out += value.as_bool() ? "true" : "false";
  } else if (value.is_int()) {
    *out += std::to_string(value.as_int());
  } else if (value.is_float()) {
    const double d = value.as_float();
    *out += std::isnan(d)   ? "NaN"
            : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                            : FloatRepr(d);
  } else if (value.is_string()) {
    AppendJsonString(value.as_string(), format.ensure_ascii, out);
  } else if (value.is_list()) {
    const auto& items = value.as_list().items;
    if (items.empty()) {
      *out += "[]";
      return absl::OkStatus();
    }
    out->push_back('[');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += item_sep;
      newline(depth + 1);
      RETURN_IF_ERROR(AppendJson(items[i], format, depth + 1, out));
    }
    newline(depth);
    out->push_back(']');
  } else if (value.is_dict()) {
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& item : value.as_dict().items) items.push_back(&item);
    if (items.empty()) {
      *out += "{}";
      return absl::OkStatus();
    }
    if (format.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
    out->push_back('{');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += item_sep;
      newline(depth + 1);
      AppendJsonString(items[i]->first, format.ensure_ascii, out);
      *out += format.key_sep;
      RETURN_IF_ERROR(AppendJson(items[i]->second, format, depth + 1, out));
    }
    newline(depth);
    out->push_back('}');
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("Object of type ", value.TypeName(), " is not JSON serializable"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Value::Repr() const {
  if (is_string()) return StringRepr(as_string());
  if (is_list()) {
    const ValueList& list = as_list();
    std::string out = list.is_tuple ? "(" : "[";
    for (size_t i = 0; i < list.items.size(); ++i) {
      if (i > 0) out += ", ";
      out += list.items[i].Repr();
    }
    if (list.is_tuple && list.items.size() == 1) out += ",";
    return out + (list.is_tuple ? ")" : "]");
  }
  if (is_dict()) {
    const ValueDict& dict = as_dict();
    std::string out = dict.is_namespace ? "<Namespace {" : "{";
    for (size_t i = 0; i < dict.items.size(); ++i) {
      if (i > 0) out += ", ";
      out += StringRepr(dict.items[i].first) + ": " + dict.items[i].second.Repr();
    }
    return out + (dict.is_namespace ? "}>" : "}");
  }
  return Str();
}

std::string Value::Str() const {
  if (is_undefined()) return "";
  if (is_none()) return "None";
  if (is_bool()) return as_bool() ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_float()) return FloatRepr(as_float());
  if (is_string()) return as_string();
  if (is_callable()) return absl::StrCat("<function ", as_callable().name, ">");
  return Repr();
}

std::string Value::TypeName() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_list()) return as_list().is_tuple ? "tuple" : "list";
  if (is_dict()) return as_dict().is_namespace ? "Namespace" : "dict";
  return "function";
}

bool Equals(const Value& a, const Value& b) {
  const bool a_num = a.is_number() || a.is_bool();
  const bool b_num = b.is_number() || b.is_bool();
  if (a_num && b_num) {
    if ((a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool())) {
      const int64_t x = a.is_bool() ? a.as_bool() : a.as_int();
      const int64_t y = b.is_bool() ? b.as_bool() : b.as_int();
      return x == y;
    }
    return a.as_double() == b.as_double();
  }
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_none() || b.is_none()) return a.is_none() && b.is_none();
  if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
  if (a.is_list() && b.is_list()) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    if (a.as_list().is_tuple != b.as_list().is_tuple || x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (!Equals(x[i], y[i])) return false;
    }
    return true;
  }
  if (a.is_dict() && b.is_dict()) {
    const ValueDict& x = a.as_dict();
    const ValueDict& y = b.as_dict();
    if (x.items.size() != y.items.size()) return false;
    for (const auto& [key, value] : x.items) {
      const Value* other = y.Find(key);
      if (other == nullptr || !Equals(value, *other)) return false;
    }
    return true;
  }
  if (a.is_callable() && b.is_callable()) return &a.as_callable() == &b.as_callable();
  return false;
}

absl::StatusOr<bool> LessThan(const Value& a, const Value& b) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
    if ((a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool())) {
      return (a.is_bool() ? a.as_bool() : a.as_int()) < (b.is_bool() ? b.as_bool() : b.as_int());
    }
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list()) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return LessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::StatusOr<std::string> ToJson(const Value& value, int indent, bool sort_keys,
                                   const std::pair<std::string, std::string>* separators,
                                   bool ensure_ascii) {
  JsonFormat format{indent, sort_keys, ensure_ascii, indent < 0 ? ", " : ",", ": "};
  if (separators != nullptr) {
    format.item_sep = separators->first;
    format.key_sep = separators->second;
  }
  std::string out;
  RETURN_IF_ERROR(AppendJson(value, format, 0, &out));
  return out;
}

}  // namespace iquest::jinja
