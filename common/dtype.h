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
// weights and activations. The quantized types (GGUF's blocks, kernels/quant/ggml_quant.h) hold
// weights only: a row of a quantized [rows, cols] tensor is cols / QK blocks of block_bytes, so
// such a tensor has no per-element size and its rows are whole blocks.
enum class DType { kF32, kF16, kBF16, kI32, kQ4_0, kQ8_0, kQ4_K, kQ5_K, kQ6_K };

// Bytes of one element; CHECK-fails for a quantized type (use DTypeBytes).
size_t DTypeSize(DType dtype);
// "f32", "f16", "bf16", "i32", "q4_0", "q8_0", "q4_k", "q5_k", "q6_k"
std::string_view DTypeName(DType dtype);
// The float dtype named "f32", "f16" or "bf16" (DTypeName's spelling); nullopt otherwise.
std::optional<DType> FloatDTypeFromName(std::string_view name);
bool IsFloat(DType dtype);  // f32, f16, bf16
bool IsQuantized(DType dtype);

// A dtype's storage unit: `elements` values in `bytes` bytes (one element for the dense types;
// QK weights for a quantized block). The one table of GGUF's block sizes.
struct DTypeBlock {
  int64_t elements = 1;
  int64_t bytes = 0;
};
DTypeBlock BlockOf(DType dtype);
// Bytes of `num_elements` values; num_elements must be whole blocks (CHECKed).
size_t DTypeBytes(DType dtype, int64_t num_elements);

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
    default:
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
    default:
      return;
  }
}

}  // namespace iquest
