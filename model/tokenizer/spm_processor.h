// A thin wrapper over libsentencepiece's SentencePieceProcessor with a plain C++ interface.
// libsentencepiece is reached only through a dlopen'ed shim (spm_shim/): it bundles and exports
// its own protobuf, which must never meet gRPC's libprotobuf in one symbol namespace.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace iquest {

struct SpmShim;

class SpmProcessor {
 public:
  // Loads a tokenizer.model file; on failure returns null and sets *error.
  static std::unique_ptr<SpmProcessor> Load(const std::string& path, std::string* error);
  ~SpmProcessor();

  // Encodes valid UTF-8; false (with *error) if sentencepiece reports a failure.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;
  // sentencepiece's own decode, for tests comparing against ours.
  std::string Decode(const std::vector<int>& ids) const;

  int size() const;
  std::string Piece(int id) const;
  int PieceToId(std::string_view piece) const;  // The unknown id when absent.
  bool IsByte(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsUnused(int id) const;
  float Score(int id) const;  // The piece's score in the model (BPE: merge priority).
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  // Whether the model prefixes text with a space (SentencePiece's add_dummy_prefix).
  bool add_dummy_prefix() const;

 private:
  SpmProcessor();
  const SpmShim* shim_ = nullptr;
  void* handle_ = nullptr;  // The shim's processor.
};

}  // namespace iquest
