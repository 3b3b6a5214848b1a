// Writes safetensors files (used by the tiny-model maker and by tests that build fixtures).
#pragma once

#include <cstdint>
#include <functional>
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

// A tensor whose bytes are produced only when the writer reaches it, so that writing a
// multi-GB checkpoint holds one tensor in memory at a time.
struct StreamedTensor {
  std::string name;
  std::string dtype_name;
  std::vector<int64_t> shape;
  uint64_t num_bytes = 0;
  // Fills `bytes` (resized by the callee) with exactly num_bytes; called once, in order.
  std::function<absl::Status(std::vector<uint8_t>& bytes)> fill;
};

absl::Status WriteSafetensorsStreamed(const std::string& path,
                                      const std::vector<StreamedTensor>& tensors);

}  // namespace iquest
