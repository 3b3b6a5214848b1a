// HF tokenizer.json with a BPE model: byte-level BPE (GPT-2, Llama-3, Qwen2) and
// SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama, Mistral).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/bpe_model.h"
#include "model/tokenizer/split_patterns.h"
#include "model/tokenizer/tokenizer.h"

namespace iquest {

// One step of the "normalizer" (a Sequence is flattened into a list of steps).
struct NormalizerStep {
  enum class Kind { kUnicode, kPrepend, kReplace };
  Kind kind = Kind::kUnicode;
  int utf8proc_options = 0;  // kUnicode: NFC / NFD / NFKC / NFKD as utf8proc flags.
  std::string text;          // kPrepend: the prefix; kReplace: the string replaced.
  std::string content;       // kReplace: its replacement.
};

// The "pre_tokenizer", reduced to what real BPE tokenizers use: at most one splitting regex, the
// ByteLevel byte mapping, and Metaspace.
struct PreTokenizerSpec {
  enum class Prepend { kAlways, kFirst, kNever };
  std::optional<SplitPattern> split;
  bool byte_level = false;
  bool add_prefix_space = false;  // ByteLevel's.
  bool metaspace = false;
  std::string replacement = "\u2581";
  Prepend prepend = Prepend::kAlways;
  bool metaspace_split = true;
};

// The "decoder" as per-token rules plus stream options.
struct DecoderSpec {
  bool byte_level = false;                                    // Non-added tokens are raw bytes.
  bool byte_fallback = false;                                 // <0xNN> tokens are raw bytes.
  std::vector<std::pair<std::string, std::string>> replaces;  // Applied to each token's text.
  bool strip_first_space = false;  // Metaspace: the first token loses one leading space.
  int strip_leading_spaces = 0;    // Strip decoder.
};

// Everything read from tokenizer.json; see hf_tokenizer_json.cc.
struct HfTokenizerSpec {
  std::vector<NormalizerStep> normalizers;
  PreTokenizerSpec pre_tokenizer;
  BpeModel model;
  std::vector<AddedToken> added_tokens;
  std::vector<int32_t> prefix_ids;  // post_processor, single sequence.
  std::vector<int32_t> suffix_ids;
  DecoderSpec decoder;
};

absl::StatusOr<HfTokenizerSpec> ParseTokenizerJson(std::string_view json_text);

class HfTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Create(std::string_view tokenizer_json,
                                                             TokenizerConfig config);

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

 private:
  struct Piece {
    std::string text;
    bool raw_bytes = false;
    bool special = false;
    bool present = false;
  };
  HfTokenizer() = default;
  void BuildPieces();
  std::string Normalize(std::string_view text) const;
  // `plain`: no special token may be matched in this section (it touches a plain range).
  void EncodeSection(std::string_view text, size_t section_index, bool plain,
                     std::vector<int32_t>* ids) const;
  void EncodeNormalized(std::string_view text, size_t section_index,
                        std::vector<int32_t>* ids) const;

  HfTokenizerSpec spec_;
  AddedTokenMatcher raw_added_;         // Added tokens matched in the raw text.
  AddedTokenMatcher normalized_added_;  // Those with normalized: true.
  absl::flat_hash_map<std::string, int32_t> added_ids_;
  std::vector<Piece> pieces_;  // By id.
};

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& model_dir);

}  // namespace iquest
