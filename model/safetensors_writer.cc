#include "model/safetensors_writer.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace iquest {

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<StreamedTensor> streamed;
  streamed.reserve(tensors.size());
  for (const TensorToWrite& tensor : tensors) {
    streamed.push_back({tensor.name, tensor.dtype_name, tensor.shape, tensor.bytes.size(),
                        [&tensor](std::vector<uint8_t>& bytes) {
                          bytes = tensor.bytes;
                          return absl::OkStatus();
                        }});
  }
  return WriteSafetensorsStreamed(path, streamed);
}

absl::Status WriteSafetensorsStreamed(const std::string& path,
                                      const std::vector<StreamedTensor>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const StreamedTensor& tensor : tensors) {
    header[tensor.name] = {{"dtype", tensor.dtype_name},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.num_bytes}}};
    offset += tensor.num_bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((length >> (8 * i)) & 0xff));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<uint8_t> bytes;
  for (const StreamedTensor& tensor : tensors) {
    if (absl::Status status = tensor.fill(bytes); !status.ok()) return status;
    if (bytes.size() != tensor.num_bytes) {
      return absl::InternalError(absl::StrCat(path, ": tensor '", tensor.name, "' produced ",
                                              bytes.size(), " bytes, expected ", tensor.num_bytes));
    }
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace iquest
