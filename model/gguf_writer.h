// GgufWriter: writes GGUF v3 files in the layout llama.cpp's loader requires: metadata, tensor
// infos, then each tensor's data at the next multiple of general.alignment, in the order the
// tensors were added, with no gaps beyond that padding. Tensor bytes are produced one tensor at
// a time while writing, so converting a multi-GB checkpoint holds one tensor in memory at most.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gguf.h"

namespace iquest {

class GgufWriter {
 public:
  // Returns the tensor's bytes (little-endian, row-major): a span into memory that outlives the
  // call (e.g. an mmap), or into `scratch`, which the writer reuses for every tensor.
  using DataSource =
      std::function<absl::StatusOr<std::span<const uint8_t>>(std::vector<uint8_t>& scratch)>;

  // `alignment` (a power of two) is written as general.alignment.
  explicit GgufWriter(uint32_t alignment = kGgufDefaultAlignment);

  // Keys must be unique (CHECKed: they come from our code, not from input).
  void SetU32(const std::string& key, uint32_t value);
  void SetI32(const std::string& key, int32_t value);
  void SetF32(const std::string& key, float value);
  void SetBool(const std::string& key, bool value);
  void SetString(const std::string& key, const std::string& value);
  void SetStringArray(const std::string& key, const std::vector<std::string>& values);
  void SetF32Array(const std::string& key, const std::vector<float>& values);
  void SetI32Array(const std::string& key, const std::vector<int32_t>& values);

  // `shape` is row-major (outermost first), as everywhere in this project; it is written
  // innermost-first as GGUF requires. The source must yield exactly numel x element size bytes.
  void AddTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                 DataSource source);
  // A quantized tensor: the source yields its blocks, shape[-1] / QK of them per row.
  void AddTensor(const std::string& name, QuantType type, const std::vector<int64_t>& shape,
                 DataSource source);

  // Writes `path` through a temporary file renamed into place once complete.
  absl::Status Write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> shape;
    uint64_t num_bytes;
    DataSource source;
  };
  void AddKey(const std::string& key, GgufValueType type);
  void AddTensorOfType(const std::string& name, uint32_t ggml_type,
                       const std::vector<int64_t>& shape, DataSource source);

  uint32_t alignment_;
  uint64_t num_keys_ = 0;
  std::vector<std::string> keys_;
  std::string metadata_;  // Encoded key/value pairs.
  std::vector<Tensor> tensors_;
};

}  // namespace iquest
