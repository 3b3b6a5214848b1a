#include "server/http/openai_structured.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/http/openai_request.h"

namespace iquest {
namespace {

using json = nlohmann::ordered_json;

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// One constraint, from `param`: `kind` is json (a schema object, or its JSON text), regex,
// grammar (strings), choice (a list of strings) or json_object (true).
absl::Status Apply(const std::string& param, const std::string& kind, const json& value, bool& set,
                   serve::v1::SamplingParams& out) {
  if (value.is_null()) return absl::OkStatus();
  if (set) {
    return ParamError(
        param, absl::StrCat("'", param, "': a request takes one structured-output constraint"));
  }
  set = true;
  if (kind == "json") {
    if (value.is_string()) {
      out.set_json_schema(value.get<std::string>());
    } else if (value.is_object() || value.is_boolean()) {
      out.set_json_schema(Dump(value));
    } else {
      return ParamError(param, absl::StrCat("'", param, "' must be a JSON schema"));
    }
  } else if (kind == "regex" || kind == "grammar") {
    if (!value.is_string())
      return ParamError(param, absl::StrCat("'", param, "' must be a string"));
    if (kind == "regex") {
      out.set_regex(value.get<std::string>());
    } else {
      out.set_grammar(value.get<std::string>());
    }
  } else if (kind == "choice") {
    if (!value.is_array()) return ParamError(param, absl::StrCat("'", param, "' must be a list"));
    serve::v1::ChoiceConstraint* choice = out.mutable_choice();
    for (const json& c : value) {
      if (!c.is_string()) {
        return ParamError(param, absl::StrCat("'", param, "' entries must be strings"));
      }
      choice->add_choices(c.get<std::string>());
    }
  } else {  // json_object
    if (!value.is_boolean()) {
      return ParamError(param, absl::StrCat("'", param, "' must be a boolean"));
    }
    if (value.get<bool>()) {
      out.set_json_object(true);
    } else {
      set = false;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseStructuredOutput(const json& body, serve::v1::SamplingParams& out) {
  bool set = false;
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    const json& format = *it;
    const auto type = format.is_object() ? format.find("type") : format.end();
    if (type == format.end() || !type->is_string()) {
      return ParamError("response_format", "'response_format' must be an object with a 'type'");
    }
    const std::string t = type->get<std::string>();
    if (t == "json_object") {
      set = true;
      out.set_json_object(true);
    } else if (t == "json_schema") {
      const auto spec = format.find("json_schema");
      if (spec == format.end() || !spec->is_object() || !spec->contains("schema")) {
        return ParamError("response_format",
                          "'response_format.json_schema' must be an object with a 'schema'");
      }
      if (absl::Status s = Apply("response_format", "json", (*spec)["schema"], set, out); !s.ok()) {
        return s;
      }
    } else if (t != "text") {
      return ParamError("response_format",
                        "'response_format.type' must be text, json_object or json_schema");
    }
  }
  if (auto it = body.find("structured_outputs"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return ParamError("structured_outputs", "'structured_outputs' must be an object");
    }
    for (const char* kind : {"json", "regex", "choice", "grammar", "json_object"}) {
      if (auto v = it->find(kind); v != it->end()) {
        if (absl::Status s = Apply("structured_outputs", kind, *v, set, out); !s.ok()) return s;
      }
    }
  }
  for (const auto& [param, kind] : {std::pair<const char*, const char*>{"guided_json", "json"},
                                    {"guided_regex", "regex"},
                                    {"guided_choice", "choice"},
                                    {"guided_grammar", "grammar"}}) {
    if (auto v = body.find(param); v != body.end()) {
      if (absl::Status s = Apply(param, kind, *v, set, out); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace iquest
