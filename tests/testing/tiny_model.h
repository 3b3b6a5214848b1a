// Test fixture helpers: tiny random checkpoints on disk and a loaded model with a KV cache.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/safetensors_writer.h"
#include "tools/tiny_model.h"

namespace iquest::testing {

// Reads every tensor of `path` back as TensorToWrite, so a test can alter and rewrite them.
absl::StatusOr<std::vector<TensorToWrite>> ReadAllTensors(const std::string& path);

}  // namespace iquest::testing
