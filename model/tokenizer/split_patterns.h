// Hand-written, linear-time matchers for the split regexes that real tokenizer.json files use
// (Llama-3, Qwen2, GPT-2). Each scan step is O(length of the match), so splitting is O(n)
// whatever the input; unknown patterns are refused at load instead of being run on a
// backtracking engine.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace iquest {

enum class SplitPattern {
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
};

// Maps a tokenizer.json Split regex to its matcher; kInvalidArgument names the pattern when it is
// not one we implement.
absl::StatusOr<SplitPattern> RecognizeSplitPattern(const std::string& regex);

// Appends the pieces of `text` (valid UTF-8) to `pieces`, as the regex's match-all would split
// it with the "Isolated" behaviour. The pieces cover `text` exactly, in order.
void SplitText(SplitPattern pattern, std::string_view text, std::vector<std::string_view>* pieces);

}  // namespace iquest
