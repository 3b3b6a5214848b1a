#include "model/manifest.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/mapped_file.h"
#include "common/sha256.h"
#include "common/status.h"
#include "model/json_util.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

constexpr int kFormatVersion = 1;
constexpr char kOverrideHint[] =
    "config, weights and tokenizer must come from the same checkpoint (rewrite the manifest with "
    "iquest-write-manifest if the change is intended, or start with --allow-manifest-mismatch)";

bool IsManifested(const std::string& name) {
  static const char* const kNames[] = {"config.json",           "model.safetensors.index.json",
                                       "tokenizer.json",        "tokenizer.model",
                                       "tokenizer_config.json", "special_tokens_map.json"};
  for (const char* known : kNames) {
    if (name == known) return true;
  }
  // Weights: safetensors files (single or shards), or a GGUF file in the folder.
  return (name.size() > 12 && name.ends_with(".safetensors")) ||
         (name.size() > 5 && name.ends_with(".gguf"));
}

absl::StatusOr<ManifestEntry> HashFile(const std::string& model_dir, const std::string& name) {
  const std::string path = absl::StrCat(model_dir, "/", name);
  ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  Sha256 hash;
  // In 64 MiB pieces whose pages are dropped once hashed: verifying a 2.5 GB checkpoint must not
  // make the whole file resident on top of the weights the load is about to touch.
  constexpr size_t kPieceBytes = size_t{64} << 20;
  for (size_t offset = 0; offset < file->size(); offset += kPieceBytes) {
    const size_t count = std::min(kPieceBytes, file->size() - offset);
    hash.Update(file->data() + offset, count);
    file->DropPages(file->data() + offset, count);
  }
  return ManifestEntry{name, ToHex(hash.Finish()), file->size()};
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ManifestedFiles(const std::string& model_dir) {
  std::error_code error;
  std::filesystem::directory_iterator it(model_dir, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat(model_dir, ": cannot list: ", error.message()));
  }
  std::vector<std::string> names;
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file(error) && IsManifested(name)) names.push_back(name);
  }
  if (error) return absl::DataLossError(absl::StrCat(model_dir, ": ", error.message()));
  std::sort(names.begin(), names.end());
  return names;
}

std::string FingerprintOf(const std::vector<ManifestEntry>& files) {
  Sha256 hash;
  for (const ManifestEntry& entry : files) {
    const std::string line = absl::StrCat(entry.name, " ", entry.sha256, "\n");
    hash.Update(line.data(), line.size());
  }
  return ToHex(hash.Finish()).substr(0, 16);
}

absl::StatusOr<ModelManifest> ComputeManifest(const std::string& model_dir) {
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ManifestedFiles(model_dir));
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat(model_dir, ": no config.json, weights or tokenizer"));
  }
  ModelManifest manifest;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(ManifestEntry entry, HashFile(model_dir, name));
    manifest.files.push_back(std::move(entry));
  }
  manifest.fingerprint = FingerprintOf(manifest.files);
  return manifest;
}

std::string ManifestToJson(const ModelManifest& manifest) {
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const ManifestEntry& entry : manifest.files) {
    files.push_back({{"name", entry.name}, {"sha256", entry.sha256}, {"bytes", entry.bytes}});
  }
  const nlohmann::ordered_json json = {{"format", kFormatVersion},
                                       {"fingerprint", manifest.fingerprint},
                                       {"written_by", manifest.written_by},
                                       {"files", files}};
  return json.dump(2) + "\n";
}

absl::StatusOr<ModelManifest> ParseManifest(const std::string& text, const std::string& source) {
  ASSIGN_OR_RETURN(const nlohmann::json json, ParseJsonStrict(text, source));
  if (!json.is_object()) return absl::InvalidArgumentError(source + ": must be a JSON object");
  const JsonReader reader(json, source);
  ASSIGN_OR_RETURN(const int64_t format, reader.Int("format"));
  if (format != kFormatVersion) {
    return reader.FieldError("format",
                             absl::StrCat("is ", format, "; this build reads ", kFormatVersion));
  }
  ModelManifest manifest;
  ASSIGN_OR_RETURN(manifest.fingerprint, reader.String("fingerprint"));
  ASSIGN_OR_RETURN(manifest.written_by, reader.String("written_by", ""));
  const auto files = json.find("files");
  if (files == json.end() || !files->is_array() || files->empty()) {
    return reader.FieldError("files", "must be a non-empty array");
  }
  for (size_t i = 0; i < files->size(); ++i) {
    const nlohmann::json& item = (*files)[i];
    const std::string prefix = absl::StrCat("files[", i, "].");
    if (!item.is_object()) return reader.FieldError("files", "must hold objects");
    const JsonReader entry_reader(item, source, prefix);
    ManifestEntry entry;
    ASSIGN_OR_RETURN(entry.name, entry_reader.String("name"));
    ASSIGN_OR_RETURN(entry.sha256, entry_reader.String("sha256"));
    ASSIGN_OR_RETURN(const int64_t bytes, entry_reader.Int("bytes"));
    if (bytes < 0) return entry_reader.FieldError("bytes", "must not be negative");
    entry.bytes = static_cast<uint64_t>(bytes);
    if (entry.sha256.size() != 64) {
      return entry_reader.FieldError("sha256", "must be 64 hex digits");
    }
    manifest.files.push_back(std::move(entry));
  }
  std::sort(manifest.files.begin(), manifest.files.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.name < b.name; });
  if (FingerprintOf(manifest.files) != manifest.fingerprint) {
    return reader.FieldError("fingerprint", "does not match the listed files' digests");
  }
  return manifest;
}

absl::StatusOr<ModelManifest> VerifyManifest(const std::string& model_dir) {
  const std::string manifest_path = absl::StrCat(model_dir, "/", kManifestFileName);
  if (!std::filesystem::exists(manifest_path)) {
    return absl::NotFoundError(absl::StrCat(manifest_path, ": not found"));
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(manifest_path));
  ASSIGN_OR_RETURN(ModelManifest manifest, ParseManifest(text, manifest_path));
  ASSIGN_OR_RETURN(const std::vector<std::string> present, ManifestedFiles(model_dir));
  std::map<std::string, const ManifestEntry*> listed;
  for (const ManifestEntry& entry : manifest.files) listed[entry.name] = &entry;
  for (const std::string& name : present) {
    if (!listed.contains(name)) {
      return absl::FailedPreconditionError(absl::StrCat(model_dir, "/", name, ": not listed in ",
                                                        kManifestFileName, "; ", kOverrideHint));
    }
  }
  for (const ManifestEntry& want : manifest.files) {
    if (std::find(present.begin(), present.end(), want.name) == present.end()) {
      return absl::FailedPreconditionError(absl::StrCat(model_dir, "/", want.name, ": listed in ",
                                                        kManifestFileName, " but missing"));
    }
    ASSIGN_OR_RETURN(const ManifestEntry got, HashFile(model_dir, want.name));
    if (got.sha256 != want.sha256) {
      return absl::FailedPreconditionError(
          absl::StrCat(model_dir, "/", want.name, ": sha256 ", got.sha256.substr(0, 16), "... (",
                       got.bytes, " bytes) does not match ", kManifestFileName, "'s ",
                       want.sha256.substr(0, 16), "... (", want.bytes, " bytes); ", kOverrideHint));
    }
  }
  return manifest;
}

absl::StatusOr<ManifestCheck> CheckModelManifest(const std::string& model_dir,
                                                 bool allow_mismatch) {
  absl::StatusOr<ModelManifest> verified = VerifyManifest(model_dir);
  if (verified.ok()) {
    LOG(INFO) << "event=manifest_verified" << Kv("fingerprint", verified->fingerprint)
              << Kv("files", verified->files.size());
    return ManifestCheck{verified->fingerprint, true};
  }
  if (absl::IsNotFound(verified.status())) {
    LOG(WARNING) << "event=no_manifest" << Kv("path", model_dir)
                 << Kv("note", "config, weights and tokenizer are not verified");
    return ManifestCheck{};
  }
  if (!allow_mismatch) return verified.status();
  LOG(WARNING) << "event=manifest_mismatch_allowed" << Kv("error", verified.status().message());
  ASSIGN_OR_RETURN(const ModelManifest actual, ComputeManifest(model_dir));
  return ManifestCheck{actual.fingerprint, false};
}

}  // namespace iquest
