// A C interface over libsentencepiece, built as its own shared object and loaded with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND) by spm_processor.cc.
//
// Why: Debian's libsentencepiece bundles protobuf-lite and exports its symbols. Linked into a
// process that also uses libprotobuf (gRPC), the two copies interpose and the process crashes
// during static initialisation. Behind dlopen with local, deep binding, libsentencepiece only
// ever sees its own protobuf and the rest of the process only sees libprotobuf. Only C types
// cross this boundary; strings and arrays returned are malloc'ed and freed by iq_spm_free_*.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sentencepiece_processor.h"

namespace {

char* CopyString(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return out;
}

sentencepiece::SentencePieceProcessor* Processor(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

}  // namespace

extern "C" {

// Returns a handle, or null with *error set (free it with iq_spm_free_string).
void* iq_spm_load(const char* path, char** error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const auto status = processor->Load(path);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    delete processor;
    return nullptr;
  }
  return processor;
}

void iq_spm_free(void* handle) { delete Processor(handle); }
void iq_spm_free_string(char* text) { std::free(text); }
void iq_spm_free_ids(int* ids) { std::free(ids); }

// Encodes `text`; returns 1 with *ids (malloc'ed) and *num_ids, or 0 with *error.
int iq_spm_encode(void* handle, const char* text, size_t text_len, int** ids, size_t* num_ids,
                  char** error) {
  std::vector<int> out;
  const auto status = Processor(handle)->Encode(std::string(text, text_len), &out);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    return 0;
  }
  *num_ids = out.size();
  *ids = static_cast<int*>(std::malloc((out.size() + 1) * sizeof(int)));
  if (*ids == nullptr) return 0;
  if (!out.empty()) std::memcpy(*ids, out.data(), out.size() * sizeof(int));
  return 1;
}

char* iq_spm_decode(void* handle, const int* ids, size_t num_ids) {
  std::string text;
  if (!Processor(handle)->Decode(std::vector<int>(ids, ids + num_ids), &text).ok()) text.clear();
  return CopyString(text);
}

int iq_spm_size(void* handle) { return Processor(handle)->GetPieceSize(); }
char* iq_spm_piece(void* handle, int id) { return CopyString(Processor(handle)->IdToPiece(id)); }
int iq_spm_piece_to_id(void* handle, const char* piece, size_t len) {
  return Processor(handle)->PieceToId(std::string(piece, len));
}
int iq_spm_is_byte(void* handle, int id) { return Processor(handle)->IsByte(id); }
int iq_spm_is_control(void* handle, int id) { return Processor(handle)->IsControl(id); }
int iq_spm_is_unknown(void* handle, int id) { return Processor(handle)->IsUnknown(id); }
int iq_spm_is_unused(void* handle, int id) { return Processor(handle)->IsUnused(id); }
float iq_spm_score(void* handle, int id) { return Processor(handle)->GetScore(id); }
int iq_spm_bos_id(void* handle) { return Processor(handle)->bos_id(); }
int iq_spm_eos_id(void* handle) { return Processor(handle)->eos_id(); }
int iq_spm_unk_id(void* handle) { return Processor(handle)->unk_id(); }

// The model proto's normalizer_spec is not in Debian's headers; ask the model instead.
int iq_spm_add_dummy_prefix(void* handle) {
  std::vector<std::string> pieces;
  if (!Processor(handle)->Encode("a", &pieces).ok() || pieces.empty()) return 0;
  return pieces[0].rfind("\xE2\x96\x81", 0) == 0;
}

}  // extern "C"
