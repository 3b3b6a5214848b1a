#include "common/dtype.h"

#include "common/check.h"

namespace iquest {

DTypeBlock BlockOf(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return {1, 4};
    case DType::kF16:
    case DType::kBF16:
      return {1, 2};
    // GGUF's block sizes (ggml-common.h): see kernels/quant/ggml_quant.h for the layouts.
    case DType::kQ4_0:
      return {32, 18};
    case DType::kQ8_0:
      return {32, 34};
    case DType::kQ4_K:
      return {256, 144};
    case DType::kQ5_K:
      return {256, 176};
    case DType::kQ6_K:
      return {256, 210};
  }
  CHECK(false) << "dtype " << static_cast<int>(dtype);
  return {};
}

size_t DTypeSize(DType dtype) {
  CHECK(!IsQuantized(dtype)) << DTypeName(dtype) << " has no per-element size";
  return static_cast<size_t>(BlockOf(dtype).bytes);
}

size_t DTypeBytes(DType dtype, int64_t num_elements) {
  const DTypeBlock block = BlockOf(dtype);
  CHECK_EQ(num_elements % block.elements, 0)
      << num_elements << " " << DTypeName(dtype) << " values are not whole blocks";
  return static_cast<size_t>(num_elements / block.elements * block.bytes);
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
    case DType::kQ4_0:
      return "q4_0";
    case DType::kQ8_0:
      return "q8_0";
    case DType::kQ4_K:
      return "q4_k";
    case DType::kQ5_K:
      return "q5_k";
    case DType::kQ6_K:
      return "q6_k";
  }
  return "unknown";
}

std::optional<DType> FloatDTypeFromName(std::string_view name) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    if (DTypeName(dtype) == name) return dtype;
  }
  return std::nullopt;
}

bool IsFloat(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

bool IsQuantized(DType dtype) { return BlockOf(dtype).elements > 1; }

float F16ToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in f32.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return BitsToFloat(sign | FloatBits(magnitude));
  }
  if (exponent == 31) return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// After F. Giesen's float_to_half_fast3_rtne: subnormals are rounded by the FPU itself (adding a
// magic number aligns the 10 mantissa bits at the bottom), normals by an integer rounding bias.
uint16_t FloatToF16(float value) {
  constexpr uint32_t kF32Infinity = 255u << 23;
  constexpr uint32_t kF16Overflow = (127u + 16u) << 23;  // 65536.0f: rounds to +inf.
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t bits = FloatBits(value);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint32_t half;
  if (bits >= kF16Overflow) {
    half = bits > kF32Infinity ? 0x7e00u : 0x7c00u;
  } else if (bits < (113u << 23)) {  // Below 2^-14: the f16 result is subnormal or zero.
    const float shifted = BitsToFloat(bits) + BitsToFloat(kDenormMagic);
    half = FloatBits(shifted) - kDenormMagic;
  } else {
    const uint32_t mantissa_odd = (bits >> 13) & 1u;
    bits += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    bits += mantissa_odd;
    half = bits >> 13;
  }
  return static_cast<uint16_t>(half | (sign >> 16));
}

}  // namespace iquest
