// Reading typed fields from nlohmann::json without exceptions. Every error names the source file
// and the field path, e.g. "config.json: field 'rope_scaling.factor' must be a number".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace iquest {

// Parses `text` without throwing. Rejects invalid JSON and, unlike nlohmann's default, duplicate
// keys in any object (a later duplicate would silently win otherwise).
absl::StatusOr<nlohmann::json> ParseJsonStrict(std::string_view text, const std::string& source);

class JsonReader {
 public:
  JsonReader(const nlohmann::json& object, std::string source, std::string path_prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(path_prefix)) {}

  const nlohmann::json& object() const { return object_; }
  bool Has(const char* key) const;  // Present and not null.
  absl::StatusOr<int64_t> Int(const char* key) const;
  absl::StatusOr<int64_t> Int(const char* key, int64_t default_value) const;
  absl::StatusOr<double> Number(const char* key) const;
  absl::StatusOr<double> Number(const char* key, double default_value) const;
  absl::StatusOr<bool> Bool(const char* key, bool default_value) const;
  absl::StatusOr<std::string> String(const char* key) const;
  absl::StatusOr<std::string> String(const char* key, std::string default_value) const;

  // An error about `key` in this object: "<source>: field '<prefix><key>' <what>".
  absl::Status FieldError(const char* key, const std::string& what) const;

 private:
  const nlohmann::json& object_;
  std::string source_;
  std::string prefix_;
};

}  // namespace iquest
