// Element types of tensors, and the f32 <-> f16 / bf16 conversions (round to nearest, ties to
// even).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace iquest {

// kI32 holds token ids, positions, slot mappings and block tables; the float types hold
// weights and activations.
enum class DType { kF32, kF16, kBF16, kI32 };

size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);  // "f32", "f16", "bf16", "i32"
// The float dtype named "f32", "f16" or "bf16" (DTypeName's spelling); nullopt otherwise.
std::optional<DType> FloatDTypeFromName(std::string_view name);
bool IsFloat(DType dtype);

inline uint32_t FloatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float BitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// bf16 is the upper half of an f32, so widening is exact.
inline float Bf16ToFloat(uint16_t bits) { return BitsToFloat(static_cast<uint32_t>(bits) << 16); }

inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = FloatBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // NaN stays NaN (quiet bit set).
  }
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even.
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float F16ToFloat(uint16_t bits);
uint16_t FloatToF16(float value);

// Reads element `i` of a float tensor of any float dtype as f32.
inline float LoadAsFloat(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kI32:
      break;
  }
  return 0.0f;  // Unreachable for float tensors; callers CHECK IsFloat() first.
}

// Writes `value` as element `i` of a float tensor of any float dtype.
inline void StoreFromFloat(void* data, DType dtype, int64_t i, float value) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(data)[i] = value;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = FloatToBf16(value);
      return;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = FloatToF16(value);
      return;
    case DType::kI32:
      return;
  }
}

}  // namespace iquest
