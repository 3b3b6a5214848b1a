// SpmProcessor over the libsentencepiece shim (spm_shim/spm_shim.cc), loaded at run time with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND): see the shim's header comment for why.
#include "model/tokenizer/spm_processor.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <mutex>

namespace iquest {

// The shim's entry points.
struct SpmShim {
  void* (*load)(const char*, char**);
  void (*free)(void*);
  void (*free_string)(char*);
  void (*free_ids)(int*);
  int (*encode)(void*, const char*, size_t, int**, size_t*, char**);
  char* (*decode)(void*, const int*, size_t);
  int (*size)(void*);
  char* (*piece)(void*, int);
  int (*piece_to_id)(void*, const char*, size_t);
  int (*is_byte)(void*, int);
  int (*is_control)(void*, int);
  int (*is_unknown)(void*, int);
  int (*is_unused)(void*, int);
  float (*score)(void*, int);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*unk_id)(void*);
  int (*add_dummy_prefix)(void*);
};

namespace {

// $IQUEST_SPM_SHIM, else <dir of the executable>/../lib/, else next to the executable.
std::vector<std::string> ShimCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("IQUEST_SPM_SHIM"); env != nullptr) out.push_back(env);
  char exe[PATH_MAX];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    std::string dir(exe, static_cast<size_t>(len));
    dir = dir.substr(0, dir.find_last_of('/'));
    out.push_back(dir + "/../lib/libiquest_spm_shim.so");
    out.push_back(dir + "/libiquest_spm_shim.so");
  }
  return out;
}

template <typename T>
bool Bind(void* library, const char* name, T* out) {
  *out = reinterpret_cast<T>(::dlsym(library, name));
  return *out != nullptr;
}

const SpmShim* LoadShim(std::string* error) {
  static std::once_flag once;
  static SpmShim shim;
  static const SpmShim* loaded = nullptr;
  static std::string load_error;
  std::call_once(once, [] {
  // AddressSanitizer refuses RTLD_DEEPBIND libraries. Sanitizer test binaries link no gRPC,
  // so there is no second protobuf to keep apart there.
#if defined(__SANITIZE_ADDRESS__)
    constexpr int kFlags = RTLD_NOW | RTLD_LOCAL;
#else
    constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
    void* library = nullptr;
    for (const std::string& path : ShimCandidates()) {
      library = ::dlopen(path.c_str(), kFlags);
      if (library != nullptr) break;
      load_error += path + ": " + ::dlerror() + "; ";
    }
    if (library == nullptr) return;
    const bool ok =
        Bind(library, "iq_spm_load", &shim.load) && Bind(library, "iq_spm_free", &shim.free) &&
        Bind(library, "iq_spm_free_string", &shim.free_string) &&
        Bind(library, "iq_spm_free_ids", &shim.free_ids) &&
        Bind(library, "iq_spm_encode", &shim.encode) &&
        Bind(library, "iq_spm_decode", &shim.decode) && Bind(library, "iq_spm_size", &shim.size) &&
        Bind(library, "iq_spm_piece", &shim.piece) &&
        Bind(library, "iq_spm_piece_to_id", &shim.piece_to_id) &&
        Bind(library, "iq_spm_is_byte", &shim.is_byte) &&
        Bind(library, "iq_spm_is_control", &shim.is_control) &&
        Bind(library, "iq_spm_is_unknown", &shim.is_unknown) &&
        Bind(library, "iq_spm_is_unused", &shim.is_unused) &&
        Bind(library, "iq_spm_score", &shim.score) &&
        Bind(library, "iq_spm_bos_id", &shim.bos_id) &&
        Bind(library, "iq_spm_eos_id", &shim.eos_id) &&
        Bind(library, "iq_spm_unk_id", &shim.unk_id) &&
        Bind(library, "iq_spm_add_dummy_prefix", &shim.add_dummy_prefix);
    if (ok) {
      loaded = &shim;
    } else {
      load_error = "libiquest_spm_shim.so lacks an entry point";
    }
  });
  if (loaded == nullptr) *error = "cannot load the SentencePiece shim: " + load_error;
  return loaded;
}

std::string TakeString(const SpmShim& shim, char* text) {
  std::string out = text == nullptr ? std::string() : std::string(text);
  shim.free_string(text);
  return out;
}

}  // namespace

SpmProcessor::SpmProcessor() = default;
SpmProcessor::~SpmProcessor() {
  if (handle_ != nullptr) shim_->free(handle_);
}

std::unique_ptr<SpmProcessor> SpmProcessor::Load(const std::string& path, std::string* error) {
  const SpmShim* shim = LoadShim(error);
  if (shim == nullptr) return nullptr;
  char* load_error = nullptr;
  void* handle = shim->load(path.c_str(), &load_error);
  if (handle == nullptr) {
    *error = TakeString(*shim, load_error);
    return nullptr;
  }
  std::unique_ptr<SpmProcessor> spm(new SpmProcessor());
  spm->shim_ = shim;
  spm->handle_ = handle;
  return spm;
}

bool SpmProcessor::Encode(std::string_view text, std::vector<int>* ids, std::string* error) const {
  int* out = nullptr;
  size_t count = 0;
  char* encode_error = nullptr;
  if (shim_->encode(handle_, text.data(), text.size(), &out, &count, &encode_error) == 0) {
    *error = TakeString(*shim_, encode_error);
    return false;
  }
  ids->assign(out, out + count);
  shim_->free_ids(out);
  return true;
}

std::string SpmProcessor::Decode(const std::vector<int>& ids) const {
  return TakeString(*shim_, shim_->decode(handle_, ids.data(), ids.size()));
}

int SpmProcessor::size() const { return shim_->size(handle_); }
std::string SpmProcessor::Piece(int id) const {
  return TakeString(*shim_, shim_->piece(handle_, id));
}
int SpmProcessor::PieceToId(std::string_view piece) const {
  return shim_->piece_to_id(handle_, piece.data(), piece.size());
}
bool SpmProcessor::IsByte(int id) const { return shim_->is_byte(handle_, id) != 0; }
bool SpmProcessor::IsControl(int id) const { return shim_->is_control(handle_, id) != 0; }
bool SpmProcessor::IsUnknown(int id) const { return shim_->is_unknown(handle_, id) != 0; }
bool SpmProcessor::IsUnused(int id) const { return shim_->is_unused(handle_, id) != 0; }
float SpmProcessor::Score(int id) const { return shim_->score(handle_, id); }
int SpmProcessor::bos_id() const { return shim_->bos_id(handle_); }
int SpmProcessor::eos_id() const { return shim_->eos_id(handle_); }
int SpmProcessor::unk_id() const { return shim_->unk_id(handle_); }
bool SpmProcessor::add_dummy_prefix() const { return shim_->add_dummy_prefix(handle_) != 0; }

}  // namespace iquest
