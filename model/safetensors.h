// Safetensors reading: an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor {dtype, shape, data_offsets}, then the data. Every header field is checked before use:
// sizes with overflow-checked 64-bit arithmetic, offsets in bounds, contiguous and
// non-overlapping, byte spans equal to numel x element size, no duplicate names.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/mapped_file.h"

namespace iquest {

// The safetensors crate rejects larger headers too; it bounds the memory a header can claim.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;      // As written: "BF16", "F32", "I64", ...
  std::optional<DType> dtype;  // Set for the float types we compute with (F32, F16, BF16).
  std::vector<int64_t> shape;  // Row-major, outermost first.
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;
};

// Parses a whole safetensors image held in memory. `source` names it in errors. The returned
// tensors point into `data`, which must outlive them.
absl::StatusOr<std::vector<SafetensorsTensor>> ParseSafetensors(const uint8_t* data, size_t size,
                                                                const std::string& source);

// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(std::string_view name) const;
  const MappedFile& mapping() const { return *file_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace iquest
