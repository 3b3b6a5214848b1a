// GGUF's type tables and metadata values: names of the value and ggml types, the DType mapping,
// and GgufValue's accessors. The parser (gguf.cc) builds the values; this file reads them.
#include <iterator>

#include "common/check.h"
#include "model/gguf.h"

namespace iquest {
namespace {

// Names of ggml's tensor types by id (ggml.h); empty entries were removed from the format.
constexpr const char* kGgmlTypeNames[] = {
    "F32",    "F16",   "Q4_0",  "Q4_1",   "",      "",      "Q5_0",    "Q5_1",   "Q8_0",    "Q8_1",
    "Q2_K",   "Q3_K",  "Q4_K",  "Q5_K",   "Q6_K",  "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",    "I16",   "I32",     "I64",    "F64",     "IQ1_M",
    "BF16",   "",      "",      "",       "TQ1_0", "TQ2_0", "",        "",       "",        "MXFP4",
};

}  // namespace

uint64_t GgufScalarSize(GgufValueType type) {
  switch (type) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

const char* GgufValueTypeName(GgufValueType type) {
  constexpr const char* kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                    "bool", "string", "array", "u64", "i64", "f64"};
  const uint32_t id = static_cast<uint32_t>(type);
  return id < std::size(kNames) ? kNames[id] : "unknown";
}

std::optional<DType> DTypeOfGgmlType(uint32_t ggml_type) {
  switch (ggml_type) {
    case static_cast<uint32_t>(GgmlType::kF32):
      return DType::kF32;
    case static_cast<uint32_t>(GgmlType::kF16):
      return DType::kF16;
    case static_cast<uint32_t>(GgmlType::kBF16):
      return DType::kBF16;
    default:
      return std::nullopt;
  }
}

GgmlType GgmlTypeOf(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return GgmlType::kF32;
    case DType::kF16:
      return GgmlType::kF16;
    case DType::kBF16:
      return GgmlType::kBF16;
    default:
      CHECK(false) << "not a float dtype";
  }
  return GgmlType::kF32;
}

const char* GgmlTypeName(uint32_t ggml_type) {
  if (ggml_type < std::size(kGgmlTypeNames) && kGgmlTypeNames[ggml_type][0] != '\0') {
    return kGgmlTypeNames[ggml_type];
  }
  return "unknown";
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kU16:
    case GgufValueType::kI16:
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kU64:
    case GgufValueType::kI64:
      return true;
    default:
      return false;
  }
}

bool GgufValue::IsFloat() const {
  return type == GgufValueType::kF32 || type == GgufValueType::kF64;
}

int64_t GgufValue::AsInt(uint64_t i) const {
  const GgufValueType t = type == GgufValueType::kArray ? element_type : type;
  CHECK(type != GgufValueType::kArray || i < count);
  const uint8_t* p = raw + i * GgufScalarSize(t);
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kBool:
      return LoadLittleEndian<uint8_t>(p);
    case GgufValueType::kI8:
      return LoadLittleEndian<int8_t>(p);
    case GgufValueType::kU16:
      return LoadLittleEndian<uint16_t>(p);
    case GgufValueType::kI16:
      return LoadLittleEndian<int16_t>(p);
    case GgufValueType::kU32:
      return LoadLittleEndian<uint32_t>(p);
    case GgufValueType::kI32:
      return LoadLittleEndian<int32_t>(p);
    case GgufValueType::kU64: {
      const uint64_t v = LoadLittleEndian<uint64_t>(p);  // Values past INT64_MAX saturate.
      return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
    }
    case GgufValueType::kI64:
      return LoadLittleEndian<int64_t>(p);
    default:
      CHECK(false) << "not an integer value";
  }
  return 0;
}

double GgufValue::AsFloat(uint64_t i) const {
  const GgufValueType t = type == GgufValueType::kArray ? element_type : type;
  CHECK(type != GgufValueType::kArray || i < count);
  if (t == GgufValueType::kF32) return LoadLittleEndian<float>(raw + 4 * i);
  CHECK(t == GgufValueType::kF64) << "not a float value";
  return LoadLittleEndian<double>(raw + 8 * i);
}

}  // namespace iquest
