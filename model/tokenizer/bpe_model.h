// The BPE model of a tokenizer.json: vocabulary, merge ranks and the merge loop over one
// pre-token, with a per-thread cache of frequent words.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/bpe_merge.h"
#include "nlohmann/json.hpp"

namespace iquest {

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object (type BPE). With `byte_level`, vocabulary and
  // merges are stored as raw bytes (GPT-2's bytes_to_unicode mapping undone at load), so words are
  // merged from single bytes and decoding needs no second mapping.
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& model, bool byte_level,
                                           const std::string& source);

  // Appends the ids of one pre-token (raw UTF-8 bytes for byte-level models, else normalized
  // text). Characters that are not in the vocabulary become <0xNN> byte tokens (byte_fallback)
  // or the unknown token; without either they are dropped.
  void Encode(std::string_view word, std::vector<int32_t>* ids) const;

  // Id of a token given in its stored form (raw bytes for byte-level models), or -1.
  int32_t TokenId(std::string_view token) const;
  // Stored form of every id in [0, num_ids()); empty for ids the vocabulary skips.
  const std::vector<std::string>& tokens() const { return id_to_token_; }
  int32_t num_ids() const { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t unk_id() const { return unk_id_; }
  bool fuse_unk() const { return fuse_unk_; }
  bool byte_level() const { return byte_level_; }

 private:
  using Symbol = BpeSymbol;

  const BpeMerge* FindMerge(int32_t left, int32_t right) const;
  absl::Status AddMerges(const nlohmann::json& merges, const std::string& source);
  void InitialSymbols(std::string_view word, std::vector<Symbol>* symbols) const;
  void EmitSymbols(std::string_view word, const std::vector<Symbol>& symbols,
                   std::vector<int32_t>* ids) const;
  void EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const;

  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  size_t max_token_bytes_ = 0;  // No longer word can be a single token.
  uint64_t instance_id_ = 0;    // Keys the per-thread word cache.
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  BpeMergeMap merges_;
  int32_t byte_ids_[256];           // Single-byte token per byte value (byte-level), or -1.
  int32_t byte_fallback_ids_[256];  // <0xNN> token per byte value, or -1.
};

// GPT-2's bytes_to_unicode: the code point that stands for each byte in byte-level vocabularies.
char32_t ByteToUnicode(uint8_t byte);

}  // namespace iquest
