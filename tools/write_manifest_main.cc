// iquest-write-manifest: writes <model>/manifest.json, the sha256 digests of an HF checkpoint
// folder's config, weights and tokenizer files, which iquest-serve checks at load.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/build_version.h"
#include "common/flags.h"
#include "common/status.h"
#include "model/manifest.h"

namespace iquest {
namespace {

absl::Status Run(const std::string& model_dir, bool check) {
  if (check) {
    ASSIGN_OR_RETURN(const ModelManifest manifest, VerifyManifest(model_dir));
    std::printf("%s/%s: ok, fingerprint %s, %zu files\n", model_dir.c_str(), kManifestFileName,
                manifest.fingerprint.c_str(), manifest.files.size());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(ModelManifest manifest, ComputeManifest(model_dir));
  manifest.written_by = absl::StrCat("iquest-write-manifest ", BuildVersion());
  const std::string path = absl::StrCat(model_dir, "/", kManifestFileName);
  std::ofstream out(path, std::ios::trunc);
  out << ManifestToJson(manifest);
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  std::printf("%s: fingerprint %s, %zu files\n", path.c_str(), manifest.fingerprint.c_str(),
              manifest.files.size());
  return absl::OkStatus();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string model_dir;
  bool check = false;
  iquest::FlagParser flags("iquest-write-manifest",
                           "Writes <model>/manifest.json (sha256 of config.json, the safetensors "
                           "weights and the tokenizer files), or checks it with --check.");
  flags.AddString("model", &model_dir, "HF checkpoint folder");
  flags.AddBool("check", &check, "verify the existing manifest.json instead of writing one");
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (model_dir.empty()) {
    std::fprintf(stderr, "error: --model is required\n");
    return 2;
  }
  const absl::Status status = iquest::Run(model_dir, check);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
