#include "structured/json_scalars.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "structured/json_numbers.h"
#include "structured/regex.h"

namespace iquest {

using Json = nlohmann::ordered_json;
using E = GrammarExpr;

absl::Status JsonSchemaError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("json_schema: ", what, " (at ", path.empty() ? "the schema root" : path, ")"));
}

absl::StatusOr<std::optional<int64_t>> SchemaCount(const nlohmann::ordered_json& s, const char* key,
                                                   const std::string& path,
                                                   const GrammarLimits& limits) {
  if (!s.contains(key)) return std::optional<int64_t>();
  const Json& v = s[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > limits.max_repeat) {
    return JsonSchemaError(
        path, absl::StrCat("'", key, "' must be an integer in [0, ", limits.max_repeat, "]"));
  }
  return std::optional<int64_t>(v.get<int64_t>());
}

absl::StatusOr<GrammarExpr> StringSchemaExpr(const nlohmann::ordered_json& s,
                                             const std::string& path, JsonRules& j,
                                             const GrammarBuilder& b) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> min_length,
                   SchemaCount(s, "minLength", path, b.limits()));
  ASSIGN_OR_RETURN(const std::optional<int64_t> max_length,
                   SchemaCount(s, "maxLength", path, b.limits()));
  const bool lengths = min_length || max_length;
  if (s.contains("format")) {
    if (!s["format"].is_string()) return JsonSchemaError(path, "'format' must be a string");
    const std::string format = s["format"].get<std::string>();
    const std::optional<std::string> regex = JsonRules::FormatRegex(format);
    if (!regex) {
      return JsonSchemaError(path, absl::StrCat("format '", format,
                                                "' is not supported (supported: date, time, "
                                                "date-time, uuid, ipv4)"));
    }
    if (lengths || s.contains("pattern")) {
      return JsonSchemaError(path, "'format' beside 'pattern' or a length is not supported");
    }
    ASSIGN_OR_RETURN(E body, RegexToExpr(*regex, b, /*json_escaped=*/true));
    return E::Seq({E::Literal("\""), std::move(body), E::Literal("\"")});
  }
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) return JsonSchemaError(path, "'pattern' must be a string");
    if (lengths) return JsonSchemaError(path, "'pattern' beside a length is not supported");
    absl::StatusOr<E> body = RegexToExpr(s["pattern"].get<std::string>(), b, true);
    if (!body.ok()) {
      return JsonSchemaError(path + "/pattern", std::string(body.status().message()));
    }
    return E::Seq({E::Literal("\""), *std::move(body), E::Literal("\"")});
  }
  if (!lengths) return E::Ref(j.String());
  const int32_t lo = static_cast<int32_t>(min_length.value_or(0));
  const int32_t hi = max_length ? static_cast<int32_t>(*max_length) : -1;
  if (hi >= 0 && hi < lo) return JsonSchemaError(path, "'maxLength' is below 'minLength'");
  return E::Seq({E::Literal("\""), E::Repeat(j.Char(), lo, hi), E::Literal("\"")});
}

namespace {

// A bound keyword's value: draft 6+ numbers, or draft 4's boolean exclusive flags.
struct Bound {
  double value = 0;
  bool exclusive = false;
};
absl::StatusOr<std::optional<Bound>> ReadBound(const Json& s, bool lower, const std::string& path) {
  const char* inclusive_key = lower ? "minimum" : "maximum";
  const char* exclusive_key = lower ? "exclusiveMinimum" : "exclusiveMaximum";
  std::optional<Bound> bound;
  if (s.contains(inclusive_key)) {
    if (!s[inclusive_key].is_number()) {
      return JsonSchemaError(path, absl::StrCat("'", inclusive_key, "' must be a number"));
    }
    bound = Bound{s[inclusive_key].get<double>(), false};
  }
  if (s.contains(exclusive_key)) {
    const Json& e = s[exclusive_key];
    if (e.is_boolean()) {
      if (e.get<bool>() && bound) bound->exclusive = true;
    } else if (e.is_number()) {
      const double v = e.get<double>();
      if (!bound || (lower ? v >= bound->value : v <= bound->value)) bound = Bound{v, true};
    } else {
      return JsonSchemaError(path, absl::StrCat("'", exclusive_key, "' must be a number"));
    }
  }
  if (bound && !std::isfinite(bound->value)) {
    return JsonSchemaError(path, "numeric bounds must be finite");
  }
  if (bound && std::fabs(bound->value) > 1e18) {
    return JsonSchemaError(path, "numeric bounds above 1e18 in magnitude are not supported");
  }
  return bound;
}

}  // namespace

absl::StatusOr<GrammarExpr> IntegerSchemaExpr(const nlohmann::ordered_json& s,
                                              const std::string& path) {
  ASSIGN_OR_RETURN(const std::optional<Bound> lo, ReadBound(s, true, path));
  ASSIGN_OR_RETURN(const std::optional<Bound> hi, ReadBound(s, false, path));
  std::optional<int64_t> a, z;
  if (lo) {
    const double c = std::ceil(lo->value);
    a = static_cast<int64_t>(c) + (lo->exclusive && c == lo->value ? 1 : 0);
  }
  if (hi) {
    const double f = std::floor(hi->value);
    z = static_cast<int64_t>(f) - (hi->exclusive && f == hi->value ? 1 : 0);
  }
  if (a && z && *a > *z) return JsonSchemaError(path, "the integer bounds leave no value");
  return IntegerRangeExpr(a, z);
}

absl::StatusOr<GrammarExpr> NumberSchemaExpr(const nlohmann::ordered_json& s,
                                             const std::string& path, JsonRules& j) {
  ASSIGN_OR_RETURN(const std::optional<Bound> lo, ReadBound(s, true, path));
  ASSIGN_OR_RETURN(const std::optional<Bound> hi, ReadBound(s, false, path));
  if (!lo && !hi) return E::Ref(j.Number());
  auto integral = [](const std::optional<Bound>& b) {
    return !b || b->value == std::floor(b->value);
  };
  if (!integral(lo) || !integral(hi)) {
    return JsonSchemaError(path,
                           "bounds on type number must be integers (use type integer for "
                           "other bounds, or widen them)");
  }
  std::optional<NumberBound> a, z;
  if (lo) a = NumberBound{static_cast<int64_t>(lo->value), lo->exclusive};
  if (hi) z = NumberBound{static_cast<int64_t>(hi->value), hi->exclusive};
  if (a && z && (a->value > z->value || (a->value == z->value && (a->exclusive || z->exclusive)))) {
    return JsonSchemaError(path, "the number bounds leave no value");
  }
  return NumberRangeExpr(a, z);
}

}  // namespace iquest
