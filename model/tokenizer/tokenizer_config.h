// The parts of tokenizer_config.json that change tokenization: BOS/EOS and whether to add them,
// extra special tokens, decode clean-up, and the chat template.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "model/tokenizer/added_tokens.h"

namespace iquest {

struct TokenizerConfig {
  std::string bos_token;  // Empty when absent or null.
  std::string eos_token;
  std::string unk_token;
  std::optional<bool> add_bos_token;  // Unset: the post_processor decides.
  std::optional<bool> add_eos_token;
  // transformers.js defaults this to true when the key is absent.
  bool clean_up_tokenization_spaces = true;
  std::vector<std::string> additional_special_tokens;
  // added_tokens_decoder entries (used by tokenizer.model folders, which lack tokenizer.json).
  std::vector<AddedToken> added_tokens;
  std::string chat_template;  // Jinja source, or empty.
};

// Reads `path`; a missing file gives the defaults, a malformed one an error naming the field.
absl::StatusOr<TokenizerConfig> LoadTokenizerConfig(const std::string& path);
// The same from the file's text.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view text);

// Whole-file reads come from common/mapped_file.h.

}  // namespace iquest
