#include "model/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"

namespace iquest {
namespace {

template <typename T>
void Append(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // Little-endian hosts only, like the reader.
  out.append(bytes, sizeof(T));
}

void AppendString(std::string& out, const std::string& text) {
  Append<uint64_t>(out, text.size());
  out.append(text);
}

uint64_t PadTo(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0) << "alignment " << alignment;
  SetU32("general.alignment", alignment);
}

void GgufWriter::AddKey(const std::string& key, GgufValueType type) {
  for (const std::string& existing : keys_) CHECK(existing != key) << "duplicate key " << key;
  keys_.push_back(key);
  ++num_keys_;
  AppendString(metadata_, key);
  Append<uint32_t>(metadata_, static_cast<uint32_t>(type));
}

void GgufWriter::SetU32(const std::string& key, uint32_t value) {
  AddKey(key, GgufValueType::kU32);
  Append(metadata_, value);
}

void GgufWriter::SetI32(const std::string& key, int32_t value) {
  AddKey(key, GgufValueType::kI32);
  Append(metadata_, value);
}

void GgufWriter::SetF32(const std::string& key, float value) {
  AddKey(key, GgufValueType::kF32);
  Append(metadata_, value);
}

void GgufWriter::SetBool(const std::string& key, bool value) {
  AddKey(key, GgufValueType::kBool);
  Append<uint8_t>(metadata_, value ? 1 : 0);
}

void GgufWriter::SetString(const std::string& key, const std::string& value) {
  AddKey(key, GgufValueType::kString);
  AppendString(metadata_, value);
}

void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& values) {
  AddKey(key, GgufValueType::kArray);
  Append<uint32_t>(metadata_, static_cast<uint32_t>(GgufValueType::kString));
  Append<uint64_t>(metadata_, values.size());
  for (const std::string& value : values) AppendString(metadata_, value);
}

void GgufWriter::SetF32Array(const std::string& key, const std::vector<float>& values) {
  AddKey(key, GgufValueType::kArray);
  Append<uint32_t>(metadata_, static_cast<uint32_t>(GgufValueType::kF32));
  Append<uint64_t>(metadata_, values.size());
  for (float value : values) Append(metadata_, value);
}

void GgufWriter::SetI32Array(const std::string& key, const std::vector<int32_t>& values) {
  AddKey(key, GgufValueType::kArray);
  Append<uint32_t>(metadata_, static_cast<uint32_t>(GgufValueType::kI32));
  Append<uint64_t>(metadata_, values.size());
  for (int32_t value : values) Append(metadata_, value);
}

void GgufWriter::AddTensor(const std::string& name, GgmlType type,
                           const std::vector<int64_t>& shape, DataSource source) {
  AddTensorOfType(name, static_cast<uint32_t>(type), shape, std::move(source));
}

void GgufWriter::AddTensor(const std::string& name, QuantType type,
                           const std::vector<int64_t>& shape, DataSource source) {
  AddTensorOfType(name, static_cast<uint32_t>(type), shape, std::move(source));
}

void GgufWriter::AddTensorOfType(const std::string& name, uint32_t ggml_type,
                                 const std::vector<int64_t>& shape, DataSource source) {
  CHECK(!shape.empty() && shape.size() <= kGgufMaxDims) << name;
  CHECK(name.size() <= kGgufMaxNameBytes) << name;
  uint64_t numel = 1;
  for (int64_t dim : shape) {
    CHECK(dim > 0) << name;
    numel *= static_cast<uint64_t>(dim);
  }
  uint64_t num_bytes = 0;
  if (const std::optional<QuantType> quant = QuantTypeOfGgmlType(ggml_type)) {
    const absl::StatusOr<int64_t> row_bytes = QuantizedBytes(*quant, shape.back());
    CHECK(row_bytes.ok()) << name << ": " << row_bytes.status();
    num_bytes = numel / static_cast<uint64_t>(shape.back()) * static_cast<uint64_t>(*row_bytes);
  } else {
    num_bytes = numel * DTypeSize(*DTypeOfGgmlType(ggml_type));
  }
  for (const Tensor& t : tensors_) CHECK(t.name != name) << "duplicate tensor " << name;
  tensors_.push_back(Tensor{name, ggml_type, shape, num_bytes, std::move(source)});
}

absl::Status GgufWriter::Write(const std::string& path) const {
  std::string header;
  header.append("GGUF");
  Append<uint32_t>(header, 3);
  Append<uint64_t>(header, tensors_.size());
  Append<uint64_t>(header, num_keys_);
  header.append(metadata_);
  uint64_t offset = 0;
  for (const Tensor& tensor : tensors_) {
    AppendString(header, tensor.name);
    Append<uint32_t>(header, static_cast<uint32_t>(tensor.shape.size()));
    for (auto dim = tensor.shape.rbegin(); dim != tensor.shape.rend(); ++dim) {
      Append<uint64_t>(header, static_cast<uint64_t>(*dim));
    }
    Append<uint32_t>(header, tensor.ggml_type);
    Append<uint64_t>(header, offset);
    offset += PadTo(tensor.num_bytes, alignment_);
  }
  header.append(PadTo(header.size(), alignment_) - header.size(), '\0');

  const std::string temp_path = path + ".tmp";
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(temp_path.c_str(), "wb"));
  if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  const std::string padding(alignment_, '\0');
  bool ok = std::fwrite(header.data(), 1, header.size(), file.get()) == header.size();
  std::vector<uint8_t> scratch;
  for (const Tensor& tensor : tensors_) {
    if (!ok) break;
    absl::StatusOr<std::span<const uint8_t>> produced = tensor.source(scratch);
    if (!produced.ok()) {
      file.reset();
      std::remove(temp_path.c_str());
      return produced.status();
    }
    const std::span<const uint8_t> bytes = *produced;
    if (bytes.size() != tensor.num_bytes) {
      file.reset();
      std::remove(temp_path.c_str());
      return absl::InternalError(absl::StrCat(path, ": tensor '", tensor.name, "' produced ",
                                              bytes.size(), " bytes, expected ", tensor.num_bytes));
    }
    const uint64_t pad = PadTo(tensor.num_bytes, alignment_) - tensor.num_bytes;
    ok = std::fwrite(bytes.data(), 1, bytes.size(), file.get()) == bytes.size() &&
         std::fwrite(padding.data(), 1, pad, file.get()) == pad;
  }
  ok = ok && std::fflush(file.get()) == 0;
  file.reset();
  if (!ok || std::rename(temp_path.c_str(), path.c_str()) != 0) {
    std::remove(temp_path.c_str());
    return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

}  // namespace iquest
