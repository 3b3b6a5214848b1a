// Tokenizer::Load (format detection), the shared Decode, and IncrementalDetokenizer.
#include "model/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "model/tokenizer/hf_tokenizer.h"
#include "model/tokenizer/sentencepiece_tokenizer.h"

namespace iquest {

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  std::unique_ptr<Tokenizer> tokenizer;
  if (std::filesystem::exists(dir / "tokenizer.json")) {
    ASSIGN_OR_RETURN(tokenizer, LoadHfTokenizer(model_dir));
  } else if (std::filesystem::exists(dir / "tokenizer.model")) {
    ASSIGN_OR_RETURN(tokenizer, LoadSentencePieceTokenizer(model_dir));
  } else {
    return absl::NotFoundError(
        absl::StrCat(model_dir, ": neither tokenizer.json nor tokenizer.model found"));
  }
  // transformers (>= 4.43) saves the template beside the config and prefers that file.
  if (const std::filesystem::path jinja = dir / "chat_template.jinja";
      std::filesystem::exists(jinja)) {
    ASSIGN_OR_RETURN(tokenizer->config_.chat_template, ReadFileToString(jinja.string()));
  }
  return tokenizer;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  DecodeStream stream(decode_options());
  bool first = true;
  for (const int32_t id : ids) AddPiece(id, skip_special_tokens, &first, &stream);
  std::string out;
  stream.Finish(&out);
  return out;
}

void Tokenizer::ResolveSpecialIds() {
  bos_id_ = config_.bos_token.empty() ? -1 : TokenToId(config_.bos_token);
  eos_ids_.clear();
  if (!config_.eos_token.empty()) {
    if (const int32_t eos = TokenToId(config_.eos_token); eos >= 0) eos_ids_.push_back(eos);
  }
}

namespace {

DecodeOptions StreamOptions(const Tokenizer& tokenizer, bool clean_up_spaces) {
  DecodeOptions options = tokenizer.decode_options();
  options.clean_up_spaces = options.clean_up_spaces && clean_up_spaces;
  return options;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                                               bool clean_up_spaces)
    : tokenizer_(tokenizer),
      skip_special_tokens_(skip_special_tokens),
      stream_(StreamOptions(tokenizer, clean_up_spaces)) {}

std::string IncrementalDetokenizer::Push(int32_t id) {
  tokenizer_.AddPiece(id, skip_special_tokens_, &first_, &stream_);
  std::string out;
  stream_.TakeStable(&out);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  stream_.Finish(&out);
  stream_ = DecodeStream(tokenizer_.decode_options());
  first_ = true;
  return out;
}

}  // namespace iquest
