// tokenizer_config.json reading: token fields may be strings, null or {"content": ...} objects.
#include "model/tokenizer/tokenizer_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/json_util.h"

namespace iquest {
namespace {

constexpr char kSource[] = "tokenizer_config.json";

absl::StatusOr<std::string> TokenField(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      kSource, ": field '", key, "' must be a string, null or an object with 'content'"));
}

absl::StatusOr<std::optional<bool>> OptionalBool(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": field '", key, "' must be a bool"));
  }
  return std::optional<bool>(it->get<bool>());
}

absl::Status ReadAddedTokensDecoder(const nlohmann::json& config, TokenizerConfig* out) {
  auto it = config.find("added_tokens_decoder");
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kSource, ": field 'added_tokens_decoder' must be an object"));
  }
  for (const auto& [id_text, entry] : it->items()) {
    const std::string path = absl::StrCat("added_tokens_decoder.", id_text, ".");
    const JsonReader reader(entry, kSource, path);
    AddedToken token;
    char* end = nullptr;
    const long id = std::strtol(id_text.c_str(), &end, 10);
    if (!entry.is_object() || end == id_text.c_str() || *end != '\0' || id < 0 || id >= (1 << 24)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kSource, ": field 'added_tokens_decoder' has a bad entry '", id_text, "'"));
    }
    token.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(token.content, reader.String("content"));
    ASSIGN_OR_RETURN(token.lstrip, reader.Bool("lstrip", false));
    ASSIGN_OR_RETURN(token.rstrip, reader.Bool("rstrip", false));
    ASSIGN_OR_RETURN(token.single_word, reader.Bool("single_word", false));
    ASSIGN_OR_RETURN(token.normalized, reader.Bool("normalized", false));
    ASSIGN_OR_RETURN(token.special, reader.Bool("special", false));
    out->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerConfig> LoadTokenizerConfig(const std::string& path) {
  if (!std::filesystem::exists(path)) return TokenizerConfig();
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return ParseTokenizerConfig(text);
}

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view text) {
  TokenizerConfig out;
  ASSIGN_OR_RETURN(const nlohmann::json config, ParseJsonStrict(text, kSource));
  if (!config.is_object())
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": not an object"));
  ASSIGN_OR_RETURN(out.bos_token, TokenField(config, "bos_token"));
  ASSIGN_OR_RETURN(out.eos_token, TokenField(config, "eos_token"));
  ASSIGN_OR_RETURN(out.unk_token, TokenField(config, "unk_token"));
  ASSIGN_OR_RETURN(out.add_bos_token, OptionalBool(config, "add_bos_token"));
  ASSIGN_OR_RETURN(out.add_eos_token, OptionalBool(config, "add_eos_token"));
  const JsonReader reader(config, kSource);
  ASSIGN_OR_RETURN(out.clean_up_tokenization_spaces,
                   reader.Bool("clean_up_tokenization_spaces", true));
  if (auto it = config.find("additional_special_tokens"); it != config.end() && it->is_array()) {
    for (const auto& token : *it) {
      if (token.is_string()) out.additional_special_tokens.push_back(token.get<std::string>());
    }
  }
  if (auto it = config.find("chat_template"); it != config.end() && it->is_string()) {
    out.chat_template = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    // A list of {name, template}: take "default", as transformers does without tools.
    for (const auto& entry : *it) {
      if (!entry.is_object()) continue;
      auto name = entry.find("name");
      auto source = entry.find("template");
      if (name != entry.end() && name->is_string() && *name == "default" && source != entry.end() &&
          source->is_string()) {
        out.chat_template = source->get<std::string>();
      }
    }
  }
  RETURN_IF_ERROR(ReadAddedTokensDecoder(config, &out));
  return out;
}

}  // namespace iquest
