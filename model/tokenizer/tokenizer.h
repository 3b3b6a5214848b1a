// The tokenizer interface the engine and the server use: encode text to ids, decode ids to text
// (in one go or streamed), special-token facts. Load() picks the implementation from the files in
// a model folder: tokenizer.json (our BPE) or tokenizer.model (libsentencepiece).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/decode_stream.h"
#include "model/tokenizer/tokenizer_config.h"

namespace iquest {

struct EncodeOptions {
  // BOS/EOS as tokenizer_config.json / the post_processor say.
  bool add_special_tokens = true;
  // Special tokens written in the text become their ids; false encodes their text as plain
  // text (transformers' split_special_tokens). Non-special added tokens are matched either way.
  bool parse_special_tokens = true;
  // Byte ranges of the text where special tokens are never parsed (chat message content, so a
  // user cannot forge control tokens). Sorted, disjoint; the text must then be valid UTF-8.
  std::span<const ByteRange> plain_ranges;
};

class Tokenizer {
 public:
  // Loads tokenizer.json (+ tokenizer_config.json when present), else tokenizer.model, from a
  // model folder. Malformed files are kInvalidArgument naming the file and field.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);
  virtual ~Tokenizer();

  // Invalid UTF-8 in `text` is first replaced, one U+FFFD per maximal invalid subsequence (what
  // a WHATWG decoder makes of the bytes); with plain_ranges it is kInvalidArgument instead (the
  // ranges would no longer fit). Added/special tokens written in the text are matched as
  // `options` allow.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      const EncodeOptions& options) const = 0;
  // Special tokens in the text parsed.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const {
    EncodeOptions options;
    options.add_special_tokens = add_special_tokens;
    return Encode(text, options);
  }
  // Ids outside [0, vocab_size()) are skipped. The result is always valid UTF-8.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;
  virtual int32_t vocab_size() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;

  // From tokenizer_config.json (or the model): -1 / empty when absent.
  int32_t bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const TokenizerConfig& config() const { return config_; }
  // Id of a token's text (vocabulary or added token), or -1.
  virtual int32_t TokenToId(std::string_view token) const = 0;

  // Streaming decode support: adds one id's piece to `stream`. `first` is true for the first
  // piece that is not skipped (decoders treat the start of the text specially).
  virtual void AddPiece(int32_t id, bool skip_special_tokens, bool* first,
                        DecodeStream* stream) const = 0;
  virtual DecodeOptions decode_options() const = 0;
  // The bytes token `id` adds to the text in the middle of a sequence (raw bytes for byte
  // tokens, which may be part of a UTF-8 character); empty for ids without a piece. What the
  // structured-output matcher walks (structured/token_vocabulary.h).
  virtual std::string TokenBytes(int32_t id) const = 0;

 protected:
  // Sets bos_id_/eos_ids_ from config_ through TokenToId.
  void ResolveSpecialIds();

  TokenizerConfig config_;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

// Streams decoded text: Push(id) returns only complete UTF-8 text that no later id can change,
// and the concatenation of every Push and the final Flush equals Decode(all ids).
class IncrementalDetokenizer {
 public:
  // `clean_up_spaces` false leaves out the tokenizer's clean_up_tokenization_spaces, so the text
  // is exactly the tokens' bytes (what a grammar constrained).
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                         bool clean_up_spaces = true);

  std::string Push(int32_t id);
  // Returns the held-back rest; the detokenizer can then be reused for a new sequence.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  bool first_ = true;
  DecodeStream stream_;
};

}  // namespace iquest
