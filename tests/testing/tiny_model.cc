#include "tests/testing/tiny_model.h"

#include "common/status.h"
#include "model/safetensors.h"

namespace iquest::testing {

absl::StatusOr<std::vector<TensorToWrite>> ReadAllTensors(const std::string& path) {
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  std::vector<TensorToWrite> out;
  for (const SafetensorsTensor& t : file->tensors()) {
    out.push_back(
        {t.name, t.dtype_name, t.shape, std::vector<uint8_t>(t.data, t.data + t.num_bytes)});
  }
  return out;
}

}  // namespace iquest::testing
