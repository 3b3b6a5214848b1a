// manifest.json: the sha256 digests that tie a checkpoint's config, weights and tokenizer
// together. A folder whose files do not match its manifest (a corrupted shard, a tokenizer copied
// from another model) is refused at load, naming the file, unless the operator overrides it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace iquest {

inline constexpr char kManifestFileName[] = "manifest.json";

struct ManifestEntry {
  std::string name;    // Relative to the model folder, e.g. "model.safetensors".
  std::string sha256;  // Lower-case hex.
  uint64_t bytes = 0;
};

struct ModelManifest {
  std::vector<ManifestEntry> files;  // Sorted by name.
  // The first 16 hex digits of sha256 over the "name sha256\n" lines: one short id for the
  // config + weights + tokenizer combination (GetModelInfo, iquest_model_info).
  std::string fingerprint;
  std::string written_by;  // The build that wrote it; informational.
};

// The files of `model_dir` a manifest covers, sorted: config.json, every *.safetensors and
// model.safetensors.index.json, every *.gguf, and the tokenizer files (tokenizer.json,
// tokenizer.model, tokenizer_config.json, special_tokens_map.json) that are present.
absl::StatusOr<std::vector<std::string>> ManifestedFiles(const std::string& model_dir);

// Hashes the manifested files of `model_dir` now.
absl::StatusOr<ModelManifest> ComputeManifest(const std::string& model_dir);

std::string FingerprintOf(const std::vector<ManifestEntry>& files);
std::string ManifestToJson(const ModelManifest& manifest);
// Parses `text` read from `source`; a stored fingerprint that does not match its entries is an
// error.
absl::StatusOr<ModelManifest> ParseManifest(const std::string& text, const std::string& source);

// Compares `model_dir` with its manifest.json. FailedPrecondition naming the first file that
// differs, is missing, or is present but unlisted; NotFound when there is no manifest.json.
// Returns the verified manifest.
absl::StatusOr<ModelManifest> VerifyManifest(const std::string& model_dir);

struct ManifestCheck {
  std::string fingerprint;  // Empty when the folder has no manifest.json.
  bool verified = false;
};

// What loaders call. No manifest: a warning, fingerprint empty. A mismatch: the error of
// VerifyManifest, or, with `allow_mismatch`, a warning and the fingerprint of the files as they
// are.
absl::StatusOr<ManifestCheck> CheckModelManifest(const std::string& model_dir, bool allow_mismatch);

}  // namespace iquest
