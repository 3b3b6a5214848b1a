// Tokenizer over a SentencePiece tokenizer.model (IQuest-Coder ships one), encoded by
// libsentencepiece; decoding goes through the shared DecodeStream so streaming works the same.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/spm_processor.h"
#include "model/tokenizer/tokenizer.h"

namespace iquest {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(
      const std::string& model_path, TokenizerConfig config);

  // Added tokens from tokenizer_config.json are matched first; each text segment between them is
  // encoded by SentencePiece on its own, and only the text's start gets SentencePiece's dummy
  // space prefix (transformers' non-legacy Llama behaviour), so decode(encode(x)) == x.
  using Tokenizer::Encode;
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  bool IsSpecial(int32_t id) const override;
  int32_t TokenToId(std::string_view token) const override;
  void AddPiece(int32_t id, bool skip_special_tokens, bool* first,
                DecodeStream* stream) const override;
  DecodeOptions decode_options() const override;
  std::string TokenBytes(int32_t id) const override;

  const SpmProcessor& processor() const { return *spm_; }

 private:
  struct Piece {
    std::string text;  // "▁" already turned into " "; a single byte for <0xNN> pieces.
    bool raw_byte = false;
    bool special = false;
  };
  SentencePieceTokenizer() = default;
  void BuildPieces();
  // Encodes `text` as a continuation (no dummy prefix): it encodes the unknown piece's text
  // before it and drops that piece's ids, as transformers' LlamaTokenizer does.
  bool EncodeContinuation(std::string_view text, std::vector<int>* ids, std::string* error) const;

  std::unique_ptr<SpmProcessor> spm_;
  AddedTokenMatcher added_;
  AddedTokenMatcher special_;  // The special ones alone: found in text that stays plain.
  absl::flat_hash_map<std::string, int32_t> added_ids_;
  std::vector<Piece> pieces_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  std::string unk_text_;     // The unknown piece, e.g. "<unk>".
  size_t unk_text_ids_ = 0;  // How many ids SentencePiece encodes it to.
};

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& model_dir);

}  // namespace iquest
