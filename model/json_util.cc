#include "model/json_util.h"

#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"

namespace iquest {

namespace {

// Builds the DOM through nlohmann's plain SAX DOM builder while tracking the keys of every open
// object. (nlohmann's callback parser would also see keys, but it rescans the parent object at
// every object end, which is quadratic in the number of tensors of a safetensors header.)
class StrictSax {
 public:
  using json = nlohmann::json;
  explicit StrictSax(json& result) : dom_(result, /*allow_exceptions=*/false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool value) { return dom_.boolean(value); }
  bool number_integer(json::number_integer_t value) { return dom_.number_integer(value); }
  bool number_unsigned(json::number_unsigned_t value) { return dom_.number_unsigned(value); }
  bool number_float(json::number_float_t value, const json::string_t& text) {
    return dom_.number_float(value, text);
  }
  bool string(json::string_t& value) { return dom_.string(value); }
  bool binary(json::binary_t& value) { return dom_.binary(value); }
  bool start_object(std::size_t size) {
    open_objects_.emplace_back();
    return dom_.start_object(size);
  }
  bool key(json::string_t& value) {
    if (!open_objects_.back().insert(value).second) {
      duplicate_ = value;
      return false;  // Stops the parse.
    }
    return dom_.key(value);
  }
  bool end_object() {
    open_objects_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t size) { return dom_.start_array(size); }
  bool end_array() { return dom_.end_array(); }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& error) {
    syntax_error_ = true;
    return dom_.parse_error(position, token, error);
  }

  const std::string& duplicate() const { return duplicate_; }
  bool syntax_error() const { return syntax_error_; }

 private:
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::unordered_set<std::string>> open_objects_;
  std::string duplicate_;
  bool syntax_error_ = false;
};

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonStrict(std::string_view text, const std::string& source) {
  nlohmann::json value;
  StrictSax sax(value);
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax,
                                            nlohmann::json::input_format_t::json,
                                            /*strict=*/true);
  if (!sax.duplicate().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": duplicate key '", sax.duplicate(), "'"));
  }
  if (!ok || sax.syntax_error()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON"));
  }
  return value;
}

bool JsonReader::Has(const char* key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

absl::Status JsonReader::FieldError(const char* key, const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", prefix_, key, "' ", what));
}

absl::StatusOr<int64_t> JsonReader::Int(const char* key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return FieldError(key, "is missing");
  if (it->is_number_unsigned()) {
    const uint64_t value = it->get<uint64_t>();
    if (value > static_cast<uint64_t>(INT64_MAX)) return FieldError(key, "is out of range");
    return static_cast<int64_t>(value);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return FieldError(key, "must be an integer");
}

absl::StatusOr<int64_t> JsonReader::Int(const char* key, int64_t default_value) const {
  if (!Has(key)) return default_value;
  return Int(key);
}

absl::StatusOr<double> JsonReader::Number(const char* key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return FieldError(key, "is missing");
  if (!it->is_number()) return FieldError(key, "must be a number");
  return it->get<double>();
}

absl::StatusOr<double> JsonReader::Number(const char* key, double default_value) const {
  if (!Has(key)) return default_value;
  return Number(key);
}

absl::StatusOr<bool> JsonReader::Bool(const char* key, bool default_value) const {
  if (!Has(key)) return default_value;
  const nlohmann::json& value = object_.at(key);
  if (!value.is_boolean()) return FieldError(key, "must be true or false");
  return value.get<bool>();
}

absl::StatusOr<std::string> JsonReader::String(const char* key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return FieldError(key, "is missing");
  if (!it->is_string()) return FieldError(key, "must be a string");
  return it->get<std::string>();
}

absl::StatusOr<std::string> JsonReader::String(const char* key, std::string default_value) const {
  if (!Has(key)) return default_value;
  return String(key);
}

}  // namespace iquest
