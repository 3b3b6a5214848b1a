// Where a model's files are: `--model` names an HF checkpoint folder (config.json + safetensors),
// a .gguf file, or a folder holding exactly one .gguf and no safetensors. Tokenizer files are
// looked for in `folder` either way.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace iquest {

struct ModelFiles {
  std::string folder;     // The checkpoint folder, or the folder holding the .gguf.
  std::string gguf_path;  // Empty for a safetensors checkpoint.
};

absl::StatusOr<ModelFiles> FindModelFiles(const std::string& path);

}  // namespace iquest
