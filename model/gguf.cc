#include "model/gguf.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/checked_math.h"
#include "common/status.h"

namespace iquest {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32.

bool IsKnownValueType(uint32_t type) { return type <= static_cast<uint32_t>(GgufValueType::kF64); }

// Reads the file front to back; every read is bounds-checked and names what it was reading.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}

  uint64_t position() const { return position_; }
  uint64_t remaining() const { return size_ - position_; }

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
  }

  absl::StatusOr<const uint8_t*> Take(uint64_t bytes, const std::string& what) {
    if (bytes > remaining()) {
      return Error(absl::StrCat("truncated: ", what, " needs ", bytes, " bytes at offset ",
                                position_, " but the file ends at ", size_));
    }
    const uint8_t* p = data_ + position_;
    position_ += bytes;
    return p;
  }

  absl::StatusOr<uint32_t> U32(const std::string& what) {
    ASSIGN_OR_RETURN(const uint8_t* p, Take(4, what));
    return LoadLittleEndian<uint32_t>(p);
  }
  absl::StatusOr<uint64_t> U64(const std::string& what) {
    ASSIGN_OR_RETURN(const uint8_t* p, Take(8, what));
    return LoadLittleEndian<uint64_t>(p);
  }
  // A u64 length then that many bytes. The length is checked against the end of the file
  // before it is used, so a length of 2^63 is an error, not an allocation.
  absl::StatusOr<std::string_view> String(const std::string& what, uint64_t max_bytes) {
    ASSIGN_OR_RETURN(const uint64_t length, U64(absl::StrCat(what, " length")));
    if (length > max_bytes) {
      return Error(
          absl::StrCat(what, " is ", length, " bytes, more than the limit of ", max_bytes));
    }
    ASSIGN_OR_RETURN(const uint8_t* p, Take(length, what));
    return std::string_view(reinterpret_cast<const char*>(p), length);
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t position_ = 0;
  const std::string& source_;
};

absl::StatusOr<GgufValue> ReadValue(Cursor& cursor, uint32_t type_id, const std::string& key) {
  const std::string what = absl::StrCat("value of key '", key, "'");
  if (!IsKnownValueType(type_id)) {
    return cursor.Error(
        absl::StrCat("key '", key, "' has unknown value type ", type_id, " (known: 0..12)"));
  }
  GgufValue value;
  value.type = static_cast<GgufValueType>(type_id);
  if (value.type == GgufValueType::kString) {
    ASSIGN_OR_RETURN(value.string, cursor.String(what, UINT64_MAX));
    return value;
  }
  if (value.type != GgufValueType::kArray) {
    ASSIGN_OR_RETURN(value.raw, cursor.Take(GgufScalarSize(value.type), what));
    if (value.type == GgufValueType::kBool && *value.raw > 1) {
      return cursor.Error(absl::StrCat("key '", key, "' is a bool holding ",
                                       static_cast<int>(*value.raw), " (allowed: 0 or 1)"));
    }
    return value;
  }
  ASSIGN_OR_RETURN(const uint32_t element_type, cursor.U32(absl::StrCat(what, " element type")));
  if (!IsKnownValueType(element_type)) {
    return cursor.Error(absl::StrCat("key '", key, "' is an array of unknown value type ",
                                     element_type, " (known: 0..12)"));
  }
  value.element_type = static_cast<GgufValueType>(element_type);
  if (value.element_type == GgufValueType::kArray) {
    return cursor.Error(
        absl::StrCat("key '", key, "' is an array of arrays; nested arrays are not supported"));
  }
  ASSIGN_OR_RETURN(value.count, cursor.U64(absl::StrCat(what, " element count")));
  // Every element takes at least this many bytes, which bounds the count by the file size.
  const uint64_t min_element_bytes =
      value.element_type == GgufValueType::kString ? 8 : GgufScalarSize(value.element_type);
  if (value.count > cursor.remaining() / min_element_bytes) {
    return cursor.Error(absl::StrCat("key '", key, "' claims ", value.count,
                                     " array elements but only ", cursor.remaining(),
                                     " bytes are left in the file"));
  }
  if (value.element_type == GgufValueType::kString) {
    value.strings.reserve(value.count);
    for (uint64_t i = 0; i < value.count; ++i) {
      ASSIGN_OR_RETURN(std::string_view s,
                       cursor.String(absl::StrCat(what, " element ", i), UINT64_MAX));
      value.strings.push_back(s);
    }
    return value;
  }
  ASSIGN_OR_RETURN(value.raw, cursor.Take(value.count * min_element_bytes, what));
  if (value.element_type == GgufValueType::kBool) {
    for (uint64_t i = 0; i < value.count; ++i) {
      if (value.raw[i] > 1) {
        return cursor.Error(absl::StrCat("key '", key, "' element ", i, " is a bool holding ",
                                         static_cast<int>(value.raw[i]), " (allowed: 0 or 1)"));
      }
    }
  }
  return value;
}

absl::Status ReadMetadata(Cursor& cursor, uint64_t count, GgufContents& contents) {
  std::unordered_set<std::string_view> seen;
  for (uint64_t i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(const std::string_view key,
                     cursor.String(absl::StrCat("metadata key ", i), kGgufMaxKeyBytes));
    if (key.empty()) return cursor.Error(absl::StrCat("metadata key ", i, " is empty"));
    if (!seen.insert(key).second) {
      return cursor.Error(absl::StrCat("duplicate metadata key '", std::string(key), "'"));
    }
    const std::string key_string(key);
    ASSIGN_OR_RETURN(const uint32_t type,
                     cursor.U32(absl::StrCat("value type of key '", key_string, "'")));
    ASSIGN_OR_RETURN(GgufValue value, ReadValue(cursor, type, key_string));
    contents.metadata.emplace_back(key_string, std::move(value));
  }
  return absl::OkStatus();
}

absl::Status ReadAlignment(Cursor& cursor, GgufContents& contents) {
  for (const auto& [key, value] : contents.metadata) {
    if (key != "general.alignment") continue;
    if (value.type != GgufValueType::kU32) {
      return cursor.Error(
          absl::StrCat("key 'general.alignment' must be u32, got ", GgufValueTypeName(value.type)));
    }
    const uint32_t alignment = LoadLittleEndian<uint32_t>(value.raw);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      return cursor.Error(
          absl::StrCat("key 'general.alignment' is ", alignment, "; it must be a power of two"));
    }
    contents.alignment = alignment;
  }
  return absl::OkStatus();
}

absl::StatusOr<GgufTensor> ReadTensorInfo(Cursor& cursor, uint64_t index) {
  GgufTensor tensor;
  ASSIGN_OR_RETURN(const std::string_view name,
                   cursor.String(absl::StrCat("name of tensor ", index), kGgufMaxNameBytes));
  if (name.empty()) return cursor.Error(absl::StrCat("tensor ", index, " has an empty name"));
  tensor.name = std::string(name);
  const std::string prefix = absl::StrCat("tensor '", tensor.name, "'");
  ASSIGN_OR_RETURN(const uint32_t rank, cursor.U32(absl::StrCat(prefix, " rank")));
  if (rank < 1 || rank > kGgufMaxDims) {
    return cursor.Error(
        absl::StrCat(prefix, " has ", rank, " dims (allowed: 1..", kGgufMaxDims, ")"));
  }
  uint64_t numel = 1;
  tensor.shape.assign(rank, 0);
  for (uint32_t d = 0; d < rank; ++d) {
    ASSIGN_OR_RETURN(const uint64_t dim, cursor.U64(absl::StrCat(prefix, " dim ", d)));
    if (dim == 0 || dim > static_cast<uint64_t>(INT64_MAX)) {
      return cursor.Error(
          absl::StrCat(prefix, " dim ", d, " is ", dim, " (allowed: 1..", INT64_MAX, ")"));
    }
    const std::optional<uint64_t> product = CheckedMul(numel, dim);
    if (!product || *product > static_cast<uint64_t>(INT64_MAX)) {
      return cursor.Error(absl::StrCat(prefix, " element count overflows 63 bits"));
    }
    numel = *product;
    tensor.shape[rank - 1 - d] = static_cast<int64_t>(dim);  // ne[0] is the innermost dim.
  }
  ASSIGN_OR_RETURN(tensor.ggml_type, cursor.U32(absl::StrCat(prefix, " type")));
  const std::optional<DType> dtype = DTypeOfGgmlType(tensor.ggml_type);
  tensor.quant = QuantTypeOfGgmlType(tensor.ggml_type);
  if (!dtype && !tensor.quant) {
    const char* type_name = GgmlTypeName(tensor.ggml_type);
    return cursor.Error(absl::StrCat(
        prefix, " has ggml type ", type_name, " (", tensor.ggml_type,
        std::string(type_name) == "unknown" ? ")" : "), which is not supported",
        "; supported: F32 (0), F16 (1), BF16 (30), Q4_0 (2), Q8_0 (8), Q4_K (12), Q5_K (13), "
        "Q6_K (14)"));
  }
  tensor.dtype = dtype.value_or(DType::kF32);
  std::optional<uint64_t> bytes;
  if (tensor.quant) {
    // Each row (the innermost dim) is whole blocks; rows follow each other.
    const absl::StatusOr<int64_t> row_bytes = QuantizedBytes(*tensor.quant, tensor.shape.back());
    if (!row_bytes.ok()) {
      return cursor.Error(absl::StrCat(prefix, " rows: ", row_bytes.status().message()));
    }
    bytes = CheckedMul(numel / static_cast<uint64_t>(tensor.shape.back()),
                       static_cast<uint64_t>(*row_bytes));
  } else {
    bytes = CheckedMul(numel, DTypeSize(*dtype));
  }
  if (!bytes) return cursor.Error(absl::StrCat(prefix, " byte size overflows 64 bits"));
  tensor.num_bytes = *bytes;
  ASSIGN_OR_RETURN(tensor.offset, cursor.U64(absl::StrCat(prefix, " data offset")));
  return tensor;
}

// Offsets aligned, data inside the file, and no two tensors sharing a byte.
absl::Status PlaceTensors(Cursor& cursor, const uint8_t* data, uint64_t size,
                          GgufContents& contents) {
  const uint64_t alignment = contents.alignment;
  const std::optional<uint64_t> padded = CheckedAdd(cursor.position(), alignment - 1);
  CHECK(padded.has_value());  // position <= size, alignment <= 2^31.
  contents.data_offset = *padded / alignment * alignment;
  std::vector<size_t> order(contents.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) {
    GgufTensor& tensor = contents.tensors[i];
    const std::string prefix = absl::StrCat("tensor '", tensor.name, "'");
    if (tensor.offset % alignment != 0) {
      return cursor.Error(absl::StrCat(prefix, " data offset ", tensor.offset,
                                       " is not a multiple of the alignment ", alignment));
    }
    const std::optional<uint64_t> begin = CheckedAdd(contents.data_offset, tensor.offset);
    const std::optional<uint64_t> end = begin ? CheckedAdd(*begin, tensor.num_bytes) : std::nullopt;
    if (!end || *end > size) {
      return cursor.Error(absl::StrCat(prefix, " data [offset ", tensor.offset, ", +",
                                       tensor.num_bytes, " bytes) ends past the file's ", size,
                                       " bytes (data section starts at ", contents.data_offset,
                                       ")"));
    }
    tensor.data = data + *begin;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return contents.tensors[a].offset < contents.tensors[b].offset;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& previous = contents.tensors[order[i - 1]];
    const GgufTensor& current = contents.tensors[order[i]];
    if (current.offset < previous.offset + previous.num_bytes) {
      return cursor.Error(
          absl::StrCat("tensor '", current.name, "' data overlaps tensor '", previous.name, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GgufContents> ParseGguf(const uint8_t* data, size_t size,
                                       const std::string& source) {
  Cursor cursor(data, size, source);
  GgufContents contents;
  ASSIGN_OR_RETURN(const uint32_t magic, cursor.U32("magic"));
  if (magic != kGgufMagic) {
    return cursor.Error(absl::StrCat("bad magic 0x", absl::Hex(magic, absl::kZeroPad8),
                                     "; a GGUF file starts with the bytes 'GGUF'"));
  }
  ASSIGN_OR_RETURN(contents.version, cursor.U32("version"));
  if (contents.version != 2 && contents.version != 3) {
    return cursor.Error(absl::StrCat("GGUF version ", contents.version,
                                     " is not supported (supported: 2, 3; big-endian files "
                                     "are not supported)"));
  }
  ASSIGN_OR_RETURN(const uint64_t tensor_count, cursor.U64("tensor count"));
  ASSIGN_OR_RETURN(const uint64_t kv_count, cursor.U64("metadata count"));
  // Smallest encodings: a key/value is a length, a 1-byte key, a type and a 1-byte value; a
  // tensor info is a length, a 1-byte name, a rank, one dim, a type and an offset.
  constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
  constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
  if (kv_count > cursor.remaining() / kMinKvBytes) {
    return cursor.Error(absl::StrCat("metadata count ", kv_count, " is more than the file's ", size,
                                     " bytes can hold"));
  }
  if (tensor_count > cursor.remaining() / kMinTensorInfoBytes) {
    return cursor.Error(absl::StrCat("tensor count ", tensor_count, " is more than the file's ",
                                     size, " bytes can hold"));
  }
  RETURN_IF_ERROR(ReadMetadata(cursor, kv_count, contents));
  RETURN_IF_ERROR(ReadAlignment(cursor, contents));
  if (tensor_count > cursor.remaining() / kMinTensorInfoBytes) {
    return cursor.Error(absl::StrCat("tensor count ", tensor_count, " is more than the ",
                                     cursor.remaining(), " bytes after the metadata can hold"));
  }
  contents.tensors.reserve(tensor_count);
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    ASSIGN_OR_RETURN(GgufTensor tensor, ReadTensorInfo(cursor, i));
    if (!names.insert(tensor.name).second) {
      return cursor.Error(absl::StrCat("duplicate tensor name '", tensor.name, "'"));
    }
    contents.tensors.push_back(std::move(tensor));
  }
  RETURN_IF_ERROR(PlaceTensors(cursor, data, size, contents));
  return contents;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::unique_ptr<GgufFile> file(new GgufFile());
  ASSIGN_OR_RETURN(file->contents_, ParseGguf(mapped->data(), mapped->size(), path));
  file->file_ = std::move(mapped);
  for (size_t i = 0; i < file->contents_.metadata.size(); ++i) {
    file->metadata_index_[file->contents_.metadata[i].first] = i;
  }
  for (size_t i = 0; i < file->contents_.tensors.size(); ++i) {
    file->tensor_index_[file->contents_.tensors[i].name] = i;
  }
  return file;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &contents_.tensors[it->second];
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &contents_.metadata[it->second].second;
}

absl::Status GgufFile::KeyError(std::string_view key, const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat(path(), ": key '", std::string(key), "' ", what));
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key, int64_t min, int64_t max) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": missing key '", std::string(key), "'"));
  }
  if (!value->IsInteger()) {
    return KeyError(key, absl::StrCat("must be an integer, got ", GgufValueTypeName(value->type)));
  }
  const int64_t v = value->AsInt();
  if (v < min || v > max) {
    return KeyError(key, absl::StrCat("is ", v, " (allowed: ", min, "..", max, ")"));
  }
  return v;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": missing key '", std::string(key), "'"));
  }
  if (!value->IsFloat()) {
    return KeyError(key, absl::StrCat("must be f32 or f64, got ", GgufValueTypeName(value->type)));
  }
  return value->AsFloat();
}

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": missing key '", std::string(key), "'"));
  }
  if (value->type != GgufValueType::kString) {
    return KeyError(key, absl::StrCat("must be a string, got ", GgufValueTypeName(value->type)));
  }
  return value->string;
}

absl::StatusOr<const GgufValue*> GgufFile::GetArray(std::string_view key,
                                                    GgufValueType element_type) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": missing key '", std::string(key), "'"));
  }
  if (value->type != GgufValueType::kArray || value->element_type != element_type) {
    return KeyError(key, absl::StrCat("must be an array of ", GgufValueTypeName(element_type)));
  }
  return value;
}

}  // namespace iquest
