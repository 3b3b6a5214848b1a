// GGUF reading (github.com/ggml-org/ggml docs/gguf.md): a little-endian header (magic "GGUF",
// version, tensor count, metadata count), typed key/value metadata, tensor infos, then the
// tensor data section at the next multiple of general.alignment.
//
// The file is untrusted. Every count is bounded by the bytes left before anything is reserved,
// every string and array length is checked against the end of the file, arrays do not nest,
// dims are positive with an overflow-checked product, data offsets are aligned, inside the file
// and non-overlapping, and duplicate keys or tensor names are refused. Only the float types we
// compute with (F32, F16, BF16) are accepted; a quantized tensor is an error naming it.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/mapped_file.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest {

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;          // GGML_MAX_DIMS.
inline constexpr uint64_t kGgufMaxNameBytes = 64;    // Tensor names, per the spec.
inline constexpr uint64_t kGgufMaxKeyBytes = 65535;  // Keys, per the spec.

enum class GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

const char* GgufValueTypeName(GgufValueType type);
// Bytes of one scalar of `type`; 0 for strings and arrays, whose size is variable.
uint64_t GgufScalarSize(GgufValueType type);

// A little-endian value at a possibly unaligned address (every host we build for is
// little-endian, like the file).
template <typename T>
T LoadLittleEndian(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// ggml float tensor types that we read and write. Quantized tensors (kernels/quant's QuantType:
// Q4_0, Q8_0, Q4_K, Q5_K, Q6_K) are read and written too; every other ggml type is refused.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kBF16 = 30 };

std::optional<DType> DTypeOfGgmlType(uint32_t ggml_type);
GgmlType GgmlTypeOf(DType dtype);  // CHECKs a float dtype.
// "Q4_K", "BF16", ... or "unknown".
const char* GgmlTypeName(uint32_t ggml_type);

// One metadata value. Scalars and numeric arrays point into the mapped file (little-endian,
// possibly unaligned: read them through the accessors).
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  const uint8_t* raw = nullptr;                     // Scalar bytes, or the first array element.
  std::string_view string;                          // type == kString.
  GgufValueType element_type = GgufValueType::kU8;  // type == kArray.
  uint64_t count = 0;                               // type == kArray: number of elements.
  std::vector<std::string_view> strings;            // type == kArray of kString.

  // Integer value (any integer type) or array element `i` of an integer array.
  int64_t AsInt(uint64_t i = 0) const;
  // Float value (f32 or f64) or array element `i` of a float array.
  double AsFloat(uint64_t i = 0) const;
  bool IsInteger() const;  // Scalar of an integer type.
  bool IsFloat() const;    // Scalar f32/f64.
};

struct GgufTensor {
  std::string name;
  uint32_t ggml_type = 0;
  // A float tensor's dtype; for a quantized one (quant set) kF32, what it dequantizes to.
  DType dtype = DType::kF32;
  std::optional<QuantType> quant;
  std::vector<int64_t> shape;  // Row-major, outermost first: GGUF's ne[] reversed.
  uint64_t offset = 0;         // Into the data section.
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;
};

struct GgufContents {
  uint32_t version = 0;
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;  // Where the data section starts in the file.
  std::vector<std::pair<std::string, GgufValue>> metadata;  // In file order.
  std::vector<GgufTensor> tensors;                          // In file order.
};

// Parses a whole GGUF image held in memory. `source` names it in errors. The result points into
// `data`, which must outlive it.
absl::StatusOr<GgufContents> ParseGguf(const uint8_t* data, size_t size, const std::string& source);

// A memory-mapped GGUF file with typed metadata look-ups whose errors name the file and key.
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const GgufContents& contents() const { return contents_; }
  const std::vector<GgufTensor>& tensors() const { return contents_.tensors; }
  const GgufTensor* FindTensor(std::string_view name) const;
  const GgufValue* Find(std::string_view key) const;
  const MappedFile& mapping() const { return *file_; }

  // kNotFound when absent; kInvalidArgument when of another type or out of [min, max].
  absl::StatusOr<int64_t> GetInt(std::string_view key, int64_t min, int64_t max) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  // An array whose elements are of `element_type`.
  absl::StatusOr<const GgufValue*> GetArray(std::string_view key, GgufValueType element_type) const;

 private:
  GgufFile() = default;
  absl::Status KeyError(std::string_view key, const std::string& what) const;

  std::unique_ptr<MappedFile> file_;
  GgufContents contents_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace iquest
