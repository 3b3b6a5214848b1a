// Writes safetensors files (used by the tiny-model maker and by tests that build fixtures).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace iquest {

struct TensorToWrite {
  std::string name;
  std::string dtype_name;  // "F32", "BF16", "F16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // Little-endian, row-major.
};

// The header is space-padded to a multiple of 8 bytes so that every tensor's data is aligned,
// as the reference implementation does.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace iquest
