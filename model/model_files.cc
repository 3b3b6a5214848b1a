#include "model/model_files.h"

#include <dirent.h>
#include <sys/stat.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace iquest {
namespace {

bool IsRegularFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string ParentFolder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};

}  // namespace

absl::StatusOr<ModelFiles> FindModelFiles(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
  }
  if (S_ISREG(info.st_mode)) {
    if (!absl::EndsWith(path, ".gguf")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a model file must be a .gguf (or pass the checkpoint folder)"));
    }
    return ModelFiles{ParentFolder(path), path};
  }
  if (!S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file or folder"));
  }
  // Safetensors win: a folder may hold both formats of one model side by side.
  if (IsRegularFile(path + "/model.safetensors") ||
      IsRegularFile(path + "/model.safetensors.index.json")) {
    return ModelFiles{path, ""};
  }
  std::unique_ptr<DIR, DirCloser> dir(::opendir(path.c_str()));
  if (dir == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot list"));
  std::vector<std::string> ggufs;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (absl::EndsWith(name, ".gguf") && IsRegularFile(path + "/" + name)) ggufs.push_back(name);
  }
  if (ggufs.size() == 1) return ModelFiles{path, path + "/" + ggufs[0]};
  if (ggufs.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": holds ", ggufs.size(), " .gguf files; pass one of them as --model"));
  }
  // Neither: let the safetensors loader report what is missing.
  return ModelFiles{path, ""};
}

}  // namespace iquest
