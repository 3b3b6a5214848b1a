#include "model/safetensors.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checked_math.h"
#include "common/status.h"
#include "model/json_util.h"

namespace iquest {
namespace {

struct DTypeInfo {
  const char* name;
  uint64_t element_size;
  std::optional<DType> dtype;
};

// Every dtype the format defines; only the float ones we compute with map to a DType.
constexpr DTypeInfo kDTypes[] = {
    {"F64", 8, std::nullopt},  {"F32", 4, DType::kF32},      {"F16", 2, DType::kF16},
    {"BF16", 2, DType::kBF16}, {"I64", 8, std::nullopt},     {"I32", 4, std::nullopt},
    {"I16", 2, std::nullopt},  {"I8", 1, std::nullopt},      {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},  {"U16", 2, std::nullopt},     {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const DTypeInfo* FindDType(const std::string& name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

absl::Status TensorError(const std::string& source, const std::string& name,
                         const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "': ", what));
}

// Shape dims must be non-negative integers whose product (times the element size) fits in u64.
absl::StatusOr<uint64_t> ParseShape(const nlohmann::json& json, const std::string& source,
                                    const std::string& name, SafetensorsTensor& tensor,
                                    uint64_t element_size) {
  if (!json.is_array() || json.size() > 8) {
    return TensorError(source, name, "'shape' must be a list of at most 8 dims");
  }
  uint64_t numel = 1;
  for (const nlohmann::json& dim : json) {
    if (!dim.is_number_unsigned() && !(dim.is_number_integer() && dim.get<int64_t>() >= 0)) {
      return TensorError(source, name, "'shape' dims must be non-negative integers");
    }
    const uint64_t value = dim.get<uint64_t>();
    const std::optional<uint64_t> product = CheckedMul(numel, value);
    if (!product || value > static_cast<uint64_t>(INT64_MAX)) {
      return TensorError(source, name, "shape product overflows 64 bits");
    }
    numel = *product;
    tensor.shape.push_back(static_cast<int64_t>(value));
  }
  const std::optional<uint64_t> num_bytes = CheckedMul(numel, element_size);
  if (!num_bytes) return TensorError(source, name, "byte size overflows 64 bits");
  return *num_bytes;
}

struct Span {
  uint64_t begin;
  uint64_t end;
  size_t tensor;
};

absl::StatusOr<SafetensorsTensor> ParseTensorInfo(const std::string& name,
                                                  const nlohmann::json& info,
                                                  const std::string& source, uint64_t buffer_size,
                                                  Span& span) {
  if (!info.is_object()) return TensorError(source, name, "entry must be an object");
  SafetensorsTensor tensor;
  tensor.name = name;
  auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) {
    return TensorError(source, name, "'dtype' must be a string");
  }
  tensor.dtype_name = dtype->get<std::string>();
  const DTypeInfo* dtype_info = FindDType(tensor.dtype_name);
  if (dtype_info == nullptr) {
    return TensorError(source, name, absl::StrCat("unknown dtype '", tensor.dtype_name, "'"));
  }
  tensor.dtype = dtype_info->dtype;
  auto shape = info.find("shape");
  if (shape == info.end()) return TensorError(source, name, "'shape' is missing");
  ASSIGN_OR_RETURN(const uint64_t num_bytes,
                   ParseShape(*shape, source, name, tensor, dtype_info->element_size));
  auto offsets = info.find("data_offsets");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return TensorError(source, name, "'data_offsets' must be two non-negative integers");
  }
  span.begin = (*offsets)[0].get<uint64_t>();
  span.end = (*offsets)[1].get<uint64_t>();
  if (span.end < span.begin || span.end > buffer_size) {
    return TensorError(source, name,
                       absl::StrCat("data_offsets [", span.begin, ", ", span.end,
                                    "] are outside the data buffer of ", buffer_size, " bytes"));
  }
  if (span.end - span.begin != num_bytes) {
    return TensorError(source, name,
                       absl::StrCat("data_offsets span ", span.end - span.begin,
                                    " bytes, but shape and dtype need ", num_bytes));
  }
  tensor.num_bytes = num_bytes;
  return tensor;
}

// The tensors must tile the data buffer exactly: no overlap, no gap, nothing left over.
absl::Status CheckTiling(std::vector<Span> spans, const std::vector<SafetensorsTensor>& tensors,
                         const std::string& source, uint64_t buffer_size) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const std::string& name = tensors[spans[i].tensor].name;
    if (spans[i].begin < expected_begin) {
      return TensorError(
          source, name,
          absl::StrCat("data_offsets overlap tensor '", tensors[spans[i - 1].tensor].name, "'"));
    }
    if (spans[i].begin > expected_begin) {
      return TensorError(source, name,
                         absl::StrCat("gap of ", spans[i].begin - expected_begin,
                                      " bytes before this tensor's data"));
    }
    expected_begin = spans[i].end;
  }
  if (expected_begin != buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": tensors cover ", expected_begin,
                                                   " of the ", buffer_size,
                                                   " data bytes (incomplete or trailing data)"));
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(const nlohmann::json& metadata, const std::string& source) {
  if (!metadata.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": __metadata__ must be an object"));
  }
  for (const auto& item : metadata.items()) {
    if (!item.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": __metadata__ value '", item.key(), "' must be a string"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SafetensorsTensor>> ParseSafetensors(const uint8_t* data, size_t size,
                                                                const std::string& source) {
  if (size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": file is ", size, " bytes, too small for the 8-byte header length"));
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | data[i];  // Little-endian.
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": header length ", header_bytes,
                                                   " exceeds the limit of ",
                                                   kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_bytes < 2 || header_bytes > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": header length ", header_bytes, " does not fit in the file of ", size, " bytes"));
  }
  const std::string_view header(reinterpret_cast<const char*>(data + 8), header_bytes);
  if (header[0] != '{') {
    return absl::InvalidArgumentError(absl::StrCat(source, ": header does not start with '{'"));
  }
  ASSIGN_OR_RETURN(const nlohmann::json json,
                   ParseJsonStrict(header, absl::StrCat(source, " header")));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": header must be a JSON object"));
  }
  const uint8_t* buffer = data + 8 + header_bytes;
  const uint64_t buffer_size = size - 8 - header_bytes;
  std::vector<SafetensorsTensor> tensors;
  std::vector<Span> spans;
  for (const auto& item : json.items()) {
    if (item.key() == "__metadata__") {
      RETURN_IF_ERROR(CheckMetadata(item.value(), source));
      continue;
    }
    Span span{0, 0, tensors.size()};
    ASSIGN_OR_RETURN(SafetensorsTensor tensor,
                     ParseTensorInfo(item.key(), item.value(), source, buffer_size, span));
    tensor.data = buffer + span.begin;
    tensors.push_back(std::move(tensor));
    spans.push_back(span);
  }
  RETURN_IF_ERROR(CheckTiling(std::move(spans), tensors, source, buffer_size));
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  ASSIGN_OR_RETURN(file->tensors_, ParseSafetensors(mapped->data(), mapped->size(), path));
  file->file_ = std::move(mapped);
  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace iquest
