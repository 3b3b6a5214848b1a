#include "structured/json_schema.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "structured/json_rules.h"
#include "structured/json_scalars.h"

namespace iquest {
namespace {

using Json = nlohmann::ordered_json;
using E = GrammarExpr;

const std::set<std::string, std::less<>> kAnnotations = {
    "title", "description", "default",    "examples", "$schema",
    "$id",   "$comment",    "deprecated", "readOnly", "writeOnly"};
const std::set<std::string, std::less<>> kSupported = {"type",
                                                       "enum",
                                                       "const",
                                                       "properties",
                                                       "required",
                                                       "additionalProperties",
                                                       "minLength",
                                                       "maxLength",
                                                       "pattern",
                                                       "format",
                                                       "minimum",
                                                       "maximum",
                                                       "exclusiveMinimum",
                                                       "exclusiveMaximum",
                                                       "items",
                                                       "prefixItems",
                                                       "minItems",
                                                       "maxItems",
                                                       "uniqueItems",
                                                       "anyOf",
                                                       "oneOf",
                                                       "allOf",
                                                       "$ref",
                                                       "$defs",
                                                       "definitions"};

class SchemaConverter {
 public:
  SchemaConverter(const Json& root, GrammarBuilder& b) : root_(root), b_(b), j_(b) {}

  absl::StatusOr<int32_t> Convert() {
    const int32_t root = b_.Declare("root");
    ref_rules_["#"] = root;
    ASSIGN_OR_RETURN(E body, Visit(root_, "", 0));
    b_.Define(root, E::Seq({j_.W(), std::move(body), j_.W()}));
    return root;
  }

  absl::StatusOr<int32_t> AnyObject() {
    const int32_t root = b_.Declare("root");
    b_.Define(root, E::Seq({j_.W(), E::Ref(j_.Object()), j_.W()}));
    return root;
  }

 private:
  absl::Status Unsupported(const std::string& path, absl::string_view what) const {
    return JsonSchemaError(path, what);
  }

  static E Literal(const Json& value) { return E::Literal(value.dump()); }

  absl::Status CheckKeywords(const Json& s, const std::string& path) const {
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (kSupported.count(it.key()) == 0 && kAnnotations.count(it.key()) == 0) {
        return Unsupported(path, absl::StrCat("keyword '", it.key(), "' is not supported"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<E> Visit(const Json& s, const std::string& path, int depth) {
    RETURN_IF_ERROR(b_.CheckTime());
    if (depth > 64) return Unsupported(path, "schemas nested more than 64 deep");
    if (s.is_boolean()) {
      if (s.get<bool>()) return E::Ref(j_.Value());
      return Unsupported(path, "the schema false matches nothing");
    }
    if (!s.is_object()) return Unsupported(path, "a schema must be an object or a boolean");
    RETURN_IF_ERROR(CheckKeywords(s, path));
    auto has = [&](const char* k) { return s.contains(k); };
    if (has("$ref")) {
      for (auto it = s.begin(); it != s.end(); ++it) {
        if (it.key() != "$ref" && it.key() != "$defs" && it.key() != "definitions" &&
            kAnnotations.count(it.key()) == 0) {
          return Unsupported(path, absl::StrCat("'$ref' beside '", it.key(), "' is not supported"));
        }
      }
      if (!s["$ref"].is_string()) return Unsupported(path, "'$ref' must be a string");
      ASSIGN_OR_RETURN(const int32_t rule, RefRule(s["$ref"].get<std::string>(), path));
      return E::Ref(rule);
    }
    for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
      if (!has(combinator)) continue;
      const Json& list = s[combinator];
      if (!list.is_array() || list.empty()) {
        return Unsupported(path, absl::StrCat("'", combinator, "' must be a non-empty array"));
      }
      for (auto it = s.begin(); it != s.end(); ++it) {
        if (it.key() != combinator && it.key() != "$defs" && it.key() != "definitions" &&
            kAnnotations.count(it.key()) == 0) {
          return Unsupported(
              path, absl::StrCat("'", combinator, "' beside '", it.key(), "' is not supported"));
        }
      }
      if (std::string_view(combinator) == "allOf" && list.size() != 1) {
        return Unsupported(path, "'allOf' with more than one schema is not supported");
      }
      std::vector<E> choices;
      for (size_t i = 0; i < list.size(); ++i) {
        ASSIGN_OR_RETURN(E e,
                         Visit(list[i], absl::StrCat(path, "/", combinator, "/", i), depth + 1));
        choices.push_back(std::move(e));
      }
      return E::Alt(std::move(choices));
    }
    if (has("const")) return Literal(s["const"]);
    if (has("enum")) {
      const Json& values = s["enum"];
      if (!values.is_array() || values.empty()) {
        return Unsupported(path, "'enum' must be a non-empty array");
      }
      std::vector<E> choices;
      for (const Json& v : values) choices.push_back(Literal(v));
      return E::Alt(std::move(choices));
    }
    std::vector<std::string> types;
    if (has("type")) {
      const Json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const Json& one : t) {
          if (!one.is_string()) return Unsupported(path, "'type' entries must be strings");
          types.push_back(one.get<std::string>());
        }
      } else {
        return Unsupported(path, "'type' must be a string or a non-empty array");
      }
    } else {
      // No type: the keywords present say which kind of value they constrain.
      if (has("properties") || has("required") || has("additionalProperties")) {
        types.push_back("object");
      } else if (has("items") || has("prefixItems") || has("minItems") || has("maxItems")) {
        types.push_back("array");
      } else if (has("minLength") || has("maxLength") || has("pattern") || has("format")) {
        types.push_back("string");
      } else if (has("minimum") || has("maximum") || has("exclusiveMinimum") ||
                 has("exclusiveMaximum")) {
        types.push_back("number");
      } else {
        return E::Ref(j_.Value());
      }
    }
    std::vector<E> choices;
    for (const std::string& type : types) {
      ASSIGN_OR_RETURN(E e, VisitType(s, type, path, depth));
      choices.push_back(std::move(e));
    }
    return E::Alt(std::move(choices));
  }

  absl::StatusOr<E> VisitType(const Json& s, const std::string& type, const std::string& path,
                              int depth) {
    if (type == "string") return StringSchemaExpr(s, path, j_, b_);
    if (type == "integer") return IntegerSchemaExpr(s, path);
    if (type == "number") return NumberSchemaExpr(s, path, j_);
    if (type == "boolean") return E::Alt({E::Literal("true"), E::Literal("false")});
    if (type == "null") return E::Literal("null");
    if (type == "object") return Object(s, path, depth);
    if (type == "array") return Array(s, path, depth);
    return Unsupported(path, absl::StrCat("unknown type '", type, "'"));
  }

  absl::StatusOr<E> Object(const Json& s, const std::string& path, int depth) {
    std::vector<std::string> names;
    std::vector<E> members;  // key ws ":" ws value ws
    if (s.contains("properties")) {
      const Json& props = s["properties"];
      if (!props.is_object()) return Unsupported(path, "'properties' must be an object");
      for (auto it = props.begin(); it != props.end(); ++it) {
        ASSIGN_OR_RETURN(
            E value, Visit(it.value(), absl::StrCat(path, "/properties/", it.key()), depth + 1));
        names.push_back(it.key());
        members.push_back(E::Seq({E::Literal(Json(it.key()).dump()), j_.W(), E::Literal(":"),
                                  j_.W(), std::move(value), j_.W()}));
      }
    }
    std::vector<bool> required(names.size(), false);
    if (s.contains("required")) {
      const Json& req = s["required"];
      if (!req.is_array()) return Unsupported(path, "'required' must be an array");
      for (const Json& r : req) {
        if (!r.is_string()) return Unsupported(path, "'required' entries must be strings");
        const auto it = std::find(names.begin(), names.end(), r.get<std::string>());
        if (it == names.end()) {
          return Unsupported(path, absl::StrCat("required property '", r.get<std::string>(),
                                                "' is not in 'properties'"));
        }
        required[static_cast<size_t>(it - names.begin())] = true;
      }
    }
    std::optional<E> extra;  // One additional member.
    if (s.contains("additionalProperties")) {
      const Json& add = s["additionalProperties"];
      if (!(add.is_boolean() && !add.get<bool>())) {
        ASSIGN_OR_RETURN(E value, Visit(add, path + "/additionalProperties", depth + 1));
        extra =
            E::Seq({j_.KeyNotIn(names), j_.W(), E::Literal(":"), j_.W(), std::move(value), j_.W()});
      }
    }
    // after[i]: members i.. once something was written (each after a comma); first[i]: the same
    // before anything was written. Rules, since each is referred to twice.
    const size_t n = names.size();
    std::vector<int32_t> after(n + 1), first(n + 1);
    const std::string base = absl::StrCat("obj-", ++objects_);
    for (size_t i = 0; i <= n; ++i) {
      after[i] = b_.Declare(absl::StrCat(base, "-after-", i));
      first[i] = b_.Declare(absl::StrCat(base, "-first-", i));
    }
    if (extra) {
      const E more = E::Repeat(E::Seq({E::Literal(","), j_.W(), *extra}), 0, -1);
      b_.Define(after[n], more);
      b_.Define(first[n], E::Optional(E::Seq({*extra, more})));
    } else {
      b_.Define(after[n], E::Empty());
      b_.Define(first[n], E::Empty());
    }
    for (size_t i = n; i-- > 0;) {
      std::vector<E> a = {E::Seq({E::Literal(","), j_.W(), members[i], E::Ref(after[i + 1])})};
      std::vector<E> f = {E::Seq({members[i], E::Ref(after[i + 1])})};
      if (!required[i]) {
        a.push_back(E::Ref(after[i + 1]));
        f.push_back(E::Ref(first[i + 1]));
      }
      b_.Define(after[i], E::Alt(std::move(a)));
      b_.Define(first[i], E::Alt(std::move(f)));
    }
    return E::Seq({E::Literal("{"), j_.W(), E::Ref(first[0]), E::Literal("}")});
  }

  absl::StatusOr<E> Array(const Json& s, const std::string& path, int depth) {
    ASSIGN_OR_RETURN(const std::optional<int64_t> min_items,
                     SchemaCount(s, "minItems", path, b_.limits()));
    ASSIGN_OR_RETURN(const std::optional<int64_t> max_items,
                     SchemaCount(s, "maxItems", path, b_.limits()));
    const int32_t lo = static_cast<int32_t>(min_items.value_or(0));
    int32_t hi = max_items ? static_cast<int32_t>(*max_items) : -1;
    if (hi >= 0 && hi < lo) return Unsupported(path, "'maxItems' is below 'minItems'");
    std::vector<E> prefix;
    if (s.contains("prefixItems")) {
      const Json& p = s["prefixItems"];
      if (!p.is_array()) return Unsupported(path, "'prefixItems' must be an array");
      for (size_t i = 0; i < p.size(); ++i) {
        ASSIGN_OR_RETURN(E e, Visit(p[i], absl::StrCat(path, "/prefixItems/", i), depth + 1));
        prefix.push_back(E::Seq({std::move(e), j_.W()}));
      }
    }
    const bool unique =
        s.contains("uniqueItems") && s["uniqueItems"].is_boolean() && s["uniqueItems"].get<bool>();
    std::optional<E> item;
    const Json* items = s.contains("items") ? &s["items"] : nullptr;
    if (items != nullptr && items->is_boolean() && !items->get<bool>()) {
      hi = hi < 0 ? static_cast<int32_t>(prefix.size())
                  : std::min<int32_t>(hi, static_cast<int32_t>(prefix.size()));
      if (hi < lo) return Unsupported(path, "'items': false leaves fewer than 'minItems'");
    } else if (unique && (hi < 0 || hi > 1)) {
      if (!prefix.empty()) return Unsupported(path, "'uniqueItems' with 'prefixItems'");
      return UniqueArray(items, lo, hi, path);
    } else {
      ASSIGN_OR_RETURN(E e, items == nullptr ? absl::StatusOr<E>(E::Ref(j_.Value()))
                                             : Visit(*items, path + "/items", depth + 1));
      item = E::Seq({std::move(e), j_.W()});
    }
    // Element k (0-based): prefix[k] or the item schema; a comma before every element but the
    // first; elements past lo are optional, nested so that element k needs element k-1.
    const int32_t num_prefix = static_cast<int32_t>(prefix.size());
    auto element = [&](int32_t k) {
      E e = k < num_prefix ? prefix[static_cast<size_t>(k)] : *item;
      return k == 0 ? e : E::Seq({E::Literal(","), j_.W(), std::move(e)});
    };
    std::vector<E> required_part;
    for (int32_t k = 0; k < std::max(lo, 0); ++k) {
      if (k >= num_prefix && !item) break;
      required_part.push_back(element(k));
    }
    // The optional tail from element `lo` on: prefix elements one by one, then a repetition.
    E tail = E::Empty();
    const int32_t start = lo;
    if (item) {
      const int32_t from = std::max(start, num_prefix);
      const int32_t reps_hi = hi < 0 ? -1 : std::max(0, hi - from);
      if (reps_hi != 0) {
        if (from == 0) {
          // No element yet: the first has no comma.
          tail = E::Optional(
              E::Seq({element(0), reps_hi < 0 ? E::Repeat(element(1), 0, -1)
                                              : E::Repeat(element(1), 0, reps_hi - 1)}));
        } else {
          tail = E::Repeat(element(from), 0, reps_hi);
        }
      }
    }
    for (int32_t k = std::min(num_prefix, hi < 0 ? num_prefix : hi); k-- > start;) {
      tail = E::Optional(E::Seq({element(k), std::move(tail)}));
    }
    required_part.push_back(std::move(tail));
    return E::Seq({E::Literal("["), j_.W(), E::Seq(std::move(required_part)), E::Literal("]")});
  }

  // uniqueItems over a finite set of values: one rule per subset already used.
  absl::StatusOr<E> UniqueArray(const Json* items, int32_t lo, int32_t hi,
                                const std::string& path) {
    std::vector<Json> values;
    if (items != nullptr && items->is_object() && items->contains("enum") &&
        (*items)["enum"].is_array()) {
      for (const Json& v : (*items)["enum"]) values.push_back(v);
    } else if (items != nullptr && items->is_object() && items->contains("const")) {
      values.push_back((*items)["const"]);
    } else if (items != nullptr && items->is_object() && items->contains("type") &&
               (*items)["type"] == "boolean") {
      values = {Json(true), Json(false)};
    } else {
      return Unsupported(path,
                         "'uniqueItems' is supported for items that are an enum, a const or "
                         "a boolean");
    }
    std::vector<Json> distinct;
    for (const Json& v : values) {
      if (std::find(distinct.begin(), distinct.end(), v) == distinct.end()) distinct.push_back(v);
    }
    if (distinct.size() > 8) return Unsupported(path, "'uniqueItems' over more than 8 values");
    const int k = static_cast<int>(distinct.size());
    if (lo > k) return Unsupported(path, "'minItems' exceeds the distinct values of 'uniqueItems'");
    std::vector<std::string> literals;
    for (const Json& v : distinct) literals.push_back(v.dump());
    return j_.UniqueArray(literals, lo, hi < 0 ? k : std::min(hi, k));
  }

  absl::StatusOr<int32_t> RefRule(const std::string& ref, const std::string& path) {
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return it->second;
    if (ref.rfind("#/", 0) != 0) {
      return Unsupported(
          path, absl::StrCat("'$ref' \"", ref, "\" is not supported (only \"#\" and \"#/...\")"));
    }
    const Json* node = &root_;
    size_t at = 2;
    while (at <= ref.size()) {
      size_t end = ref.find('/', at);
      if (end == std::string::npos) end = ref.size();
      std::string token;
      for (size_t i = at; i < end; ++i) {
        if (ref[i] == '~' && i + 1 < end && (ref[i + 1] == '0' || ref[i + 1] == '1')) {
          token.push_back(ref[i + 1] == '0' ? '~' : '/');
          ++i;
        } else {
          token.push_back(ref[i]);
        }
      }
      if (!node->is_object() || !node->contains(token)) {
        return Unsupported(path, absl::StrCat("'$ref' \"", ref, "\" points at nothing"));
      }
      node = &(*node)[token];
      at = end + 1;
    }
    const int32_t rule = b_.Declare(absl::StrCat("ref-", ref_rules_.size()));
    ref_rules_[ref] = rule;
    ASSIGN_OR_RETURN(E body, Visit(*node, ref.substr(1), 0));
    b_.Define(rule, std::move(body));
    return rule;
  }

  const Json& root_;
  GrammarBuilder& b_;
  JsonRules j_;
  std::map<std::string, int32_t> ref_rules_;
  int objects_ = 0;
};

}  // namespace

absl::StatusOr<int32_t> JsonSchemaToGrammar(const nlohmann::ordered_json& schema,
                                            GrammarBuilder& builder) {
  return SchemaConverter(schema, builder).Convert();
}

absl::StatusOr<int32_t> JsonObjectGrammar(GrammarBuilder& builder) {
  const nlohmann::ordered_json empty;
  return SchemaConverter(empty, builder).AnyObject();
}

}  // namespace iquest
