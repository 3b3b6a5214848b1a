#include "kernels/quant/ggml_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/dtype.h"

// Arithmetic here is plain f32, one rounding per operation in ggml's order: this file is built
// for generic x86-64 (no FMA), so the compiler cannot fuse d1 * q - m1 into one rounding.

namespace iquest {
namespace {

constexpr int64_t kQKK = 256;  // K-quants: super-blocks of 8 (Q6_K: 16) sub-blocks.
constexpr int64_t kQ6KBytes = 210;

void StoreF16(uint8_t* p, uint16_t bits) { std::memcpy(p, &bits, sizeof(bits)); }

// The smallest f16 >= value (value >= 0 and finite), so that a scale never shrinks in storage
// and no quant clamps. 0x7c00 (+inf) when value exceeds f16's range.
uint16_t RoundUpF16(float value) {
  uint16_t bits = FloatToF16(value);
  if (F16ToFloat(bits) < value && bits < 0x7c00) ++bits;  // Positive f16s order as integers.
  return bits;
}

#include "kernels/quant/dequantize_block.inc"

void PackScaleMinK4(const uint8_t* scales, const uint8_t* mins, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = scales[j];
      q[j + 4] = mins[j];
    } else {
      q[j + 4] = (scales[j] & 0xF) | ((mins[j] & 0xF) << 4);
      q[j - 4] |= (scales[j] >> 4) << 6;
      q[j] |= (mins[j] >> 4) << 6;
    }
  }
}

// ---- Quantization, one block ---------------------------------------------------------------

// Q8_0: d = max|x| / 127 rounded up; q = round(x / d).
void QuantizeQ8_0(const float* x, uint16_t d_bits, uint8_t* b) {
  StoreF16(b, d_bits);
  const float d = F16ToFloat(d_bits), id = d > 0 ? 1.0f / d : 0.0f;
  for (int l = 0; l < 32; ++l) {
    const long q = std::clamp(std::lround(x[l] * id), -127L, 127L);
    b[2 + l] = static_cast<uint8_t>(static_cast<int8_t>(q));
  }
}

// Q4_0 (ggml's rule): the weight of largest magnitude, v, maps to level -8: d = v / -8 (rounded
// away from zero); q = round(x / d) + 8 clamped to 15.
void QuantizeQ4_0(const float* x, uint16_t d_bits, uint8_t* b) {
  StoreF16(b, d_bits);
  const float d = F16ToFloat(d_bits), id = d != 0 ? 1.0f / d : 0.0f;
  uint8_t q[32];
  for (int l = 0; l < 32; ++l) q[l] = std::clamp<long>(std::lround(x[l] * id) + 8, 0, 15);
  for (int l = 0; l < 16; ++l) b[2 + l] = q[l] | (q[l + 16] << 4);
}

// Q4_K / Q5_K (levels = 15 / 31): sub-block j covers [-M_j, hi_j] with M_j = dmin * m_j >=
// -min(0, min x_j) and step D_j = d * sc_j >= (hi_j + M_j) / levels, both 6-bit multiples of
// f16 super-block scales rounded up; q = round((x + M_j) / D_j).
absl::Status QuantizeK45(const float* x, int levels, uint8_t* b, uint8_t* qh, uint8_t* qs) {
  float mins[8], his[8], max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* s = x + 32 * j;
    mins[j] = -std::min(0.0f, *std::min_element(s, s + 32));
    his[j] = *std::max_element(s, s + 32);
    max_min = std::max(max_min, mins[j]);
  }
  const uint16_t dmin_bits = RoundUpF16(max_min / 63);
  const float dmin = F16ToFloat(dmin_bits);
  uint8_t m_q[8], sc_q[8];
  float offsets[8], needs[8], max_need = 0;
  for (int j = 0; j < 8; ++j) {
    m_q[j] = dmin > 0 ? std::min(63.0f, std::ceil(mins[j] / dmin)) : 0;
    if (m_q[j] < 63 && dmin * m_q[j] < mins[j]) ++m_q[j];  // ceil's f32 rounding.
    offsets[j] = dmin * m_q[j];
    needs[j] = (his[j] + offsets[j]) / levels;
    max_need = std::max(max_need, needs[j]);
  }
  const uint16_t d_bits = RoundUpF16(max_need / 63);
  if (d_bits >= 0x7c00 || dmin_bits >= 0x7c00) {
    return absl::InvalidArgumentError("weights too large for f16 scales");
  }
  const float d = F16ToFloat(d_bits);
  for (int j = 0; j < 8; ++j) {
    sc_q[j] = d > 0 ? std::min(63.0f, std::ceil(needs[j] / d)) : 0;
    if (sc_q[j] < 63 && d * sc_q[j] < needs[j]) ++sc_q[j];
  }
  StoreF16(b, d_bits);
  StoreF16(b + 2, dmin_bits);
  PackScaleMinK4(sc_q, m_q, b + 4);
  if (qh != nullptr) std::memset(qh, 0, 32);
  for (int j = 0; j < 8; ++j) {
    const float step = d * sc_q[j], id = step > 0 ? 1.0f / step : 0.0f;
    const int c = j / 2, high = j % 2;
    for (int l = 0; l < 32; ++l) {
      const int q = std::clamp<long>(std::lround((x[32 * j + l] + offsets[j]) * id), 0, levels);
      uint8_t& byte = qs[32 * c + l];
      byte = high ? (byte & 0x0F) | ((q & 0xF) << 4) : (q & 0xF);
      if (qh != nullptr) qh[l] |= (q >> 4) << (2 * c + high);
    }
  }
  return absl::OkStatus();
}

// Q6_K: sub-block j (16 weights) has step D_j = d * sc_j >= max|x_j| / 31, sc_j <= 127 and d
// rounded up; q = round(x / D_j) in [-31, 31] (+32 stored).
absl::Status QuantizeQ6K(const float* x, uint8_t* b) {
  float amax[16], max_need = 0;
  for (int j = 0; j < 16; ++j) {
    amax[j] = 0;
    for (int l = 0; l < 16; ++l) amax[j] = std::max(amax[j], std::fabs(x[16 * j + l]));
    max_need = std::max(max_need, amax[j] / 31);
  }
  const uint16_t d_bits = RoundUpF16(max_need / 127);
  if (d_bits >= 0x7c00) return absl::InvalidArgumentError("weights too large for an f16 scale");
  const float d = F16ToFloat(d_bits);
  std::memset(b, 0, kQ6KBytes);
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  for (int j = 0; j < 16; ++j) {
    const float need = amax[j] / 31;
    int s = d > 0 ? static_cast<int>(std::min(127.0f, std::ceil(need / d))) : 0;
    if (s < 127 && d * s < need) ++s;
    sc[j] = static_cast<int8_t>(s);
  }
  StoreF16(b + 208, d_bits);
  for (int e = 0; e < kQKK; ++e) {
    const int n = e / 128, r = e % 128, i = r / 32, l = r % 32;
    const float step = d * static_cast<float>(sc[8 * n + r / 16]);
    const float id = step > 0 ? 1.0f / step : 0.0f;
    const int q = std::clamp<long>(std::lround(x[e] * id), -31, 31) + 32;
    uint8_t& low = b[64 * n + l + 32 * (i % 2)];
    low |= (i < 2 ? (q & 0xF) : (q & 0xF) << 4);
    b[128 + 32 * n + l] |= (q >> 4) << (2 * i);
  }
  return absl::OkStatus();
}

}  // namespace

DType DTypeOf(QuantType type) {
  switch (type) {
    case QuantType::kQ4_0:
      return DType::kQ4_0;
    case QuantType::kQ8_0:
      return DType::kQ8_0;
    case QuantType::kQ4_K:
      return DType::kQ4_K;
    case QuantType::kQ5_K:
      return DType::kQ5_K;
    case QuantType::kQ6_K:
      return DType::kQ6_K;
  }
  CHECK(false);
  return DType::kF32;
}

std::optional<QuantType> QuantTypeOf(DType dtype) {
  for (QuantType type :
       {QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ4_K, QuantType::kQ5_K, QuantType::kQ6_K}) {
    if (DTypeOf(type) == dtype) return type;
  }
  return std::nullopt;
}

QuantLayout LayoutOf(QuantType type) {
  const DTypeBlock block = BlockOf(DTypeOf(type));
  return {block.elements, block.bytes};
}

const char* QuantTypeName(QuantType type) {
  return DTypeName(DTypeOf(type)).data();  // A literal: NUL-terminated.
}

std::optional<QuantType> QuantTypeOfGgmlType(uint32_t ggml_type) {
  for (QuantType type :
       {QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ4_K, QuantType::kQ5_K, QuantType::kQ6_K}) {
    if (static_cast<uint32_t>(type) == ggml_type) return type;
  }
  return std::nullopt;
}

std::optional<QuantType> QuantTypeFromName(std::string_view name) {
  for (QuantType type :
       {QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ4_K, QuantType::kQ5_K, QuantType::kQ6_K}) {
    if (std::string_view(QuantTypeName(type)) == name) return type;
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> QuantizedBytes(QuantType type, int64_t num_elements) {
  const QuantLayout layout = LayoutOf(type);
  if (num_elements <= 0 || num_elements % layout.block_elements != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(QuantTypeName(type), " holds whole blocks of ", layout.block_elements,
                     " weights; a row of ", num_elements, " is not a positive multiple of that"));
  }
  return num_elements / layout.block_elements * layout.block_bytes;
}

absl::Status ValidateBlocks(QuantType type, const uint8_t* blocks, int64_t num_elements) {
  const QuantLayout layout = LayoutOf(type);
  CHECK_EQ(num_elements % layout.block_elements, 0);
  // Byte offsets of the block's f16 scales.
  const std::vector<int> scale_offsets = type == QuantType::kQ6_K ? std::vector<int>{208}
                                         : type == QuantType::kQ4_K || type == QuantType::kQ5_K
                                             ? std::vector<int>{0, 2}
                                             : std::vector<int>{0};
  const int64_t num_blocks = num_elements / layout.block_elements;
  for (int64_t i = 0; i < num_blocks; ++i) {
    for (int offset : scale_offsets) {
      const float scale = LoadF16(blocks + i * layout.block_bytes + offset);
      if (!std::isfinite(scale)) {
        return absl::InvalidArgumentError(absl::StrCat(QuantTypeName(type), " block ", i, " of ",
                                                       num_blocks, " has a non-finite scale"));
      }
    }
  }
  return absl::OkStatus();
}

void Dequantize(QuantType type, const uint8_t* blocks, int64_t num_elements, float* out) {
  const QuantLayout layout = LayoutOf(type);
  CHECK_EQ(num_elements % layout.block_elements, 0);
  for (int64_t e = 0; e < num_elements; e += layout.block_elements, blocks += layout.block_bytes) {
    DequantizeBlock(type, blocks, out + e);
  }
}

absl::Status Quantize(QuantType type, const float* x, int64_t num_elements, uint8_t* blocks) {
  const QuantLayout layout = LayoutOf(type);
  CHECK_EQ(num_elements % layout.block_elements, 0);
  for (int64_t e = 0; e < num_elements; e += layout.block_elements, blocks += layout.block_bytes) {
    const float* block_x = x + e;
    const int64_t block = e / layout.block_elements;
    float amax = 0, signed_max = 0;
    for (int64_t l = 0; l < layout.block_elements; ++l) {
      if (!std::isfinite(block_x[l])) {
        return absl::InvalidArgumentError(absl::StrCat("weight ", e + l, " is not finite; ",
                                                       QuantTypeName(type),
                                                       " holds finite values only"));
      }
      if (std::fabs(block_x[l]) > amax) {
        amax = std::fabs(block_x[l]);
        signed_max = block_x[l];
      }
    }
    absl::Status status;
    switch (type) {
      case QuantType::kQ4_0: {
        const uint16_t d_bits = RoundUpF16(amax / 8);
        if (d_bits >= 0x7c00) status = absl::InvalidArgumentError("weights too large");
        // The sign makes v land on level -8; +0x8000 flips an f16's sign.
        QuantizeQ4_0(block_x, signed_max > 0 ? d_bits | 0x8000 : d_bits, blocks);
        break;
      }
      case QuantType::kQ8_0: {
        const uint16_t d_bits = RoundUpF16(amax / 127);
        if (d_bits >= 0x7c00) status = absl::InvalidArgumentError("weights too large");
        QuantizeQ8_0(block_x, d_bits, blocks);
        break;
      }
      case QuantType::kQ4_K:
        status = QuantizeK45(block_x, 15, blocks, nullptr, blocks + 16);
        break;
      case QuantType::kQ5_K:
        status = QuantizeK45(block_x, 31, blocks, blocks + 16, blocks + 48);
        break;
      case QuantType::kQ6_K:
        status = QuantizeQ6K(block_x, blocks);
        break;
    }
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(QuantTypeName(type), " block ", block, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

float MaxQuantizationError(QuantType type, const uint8_t* block) {
  switch (type) {
    case QuantType::kQ4_0:
      return std::fabs(LoadF16(block));
    case QuantType::kQ8_0:
      return LoadF16(block) / 2;
    case QuantType::kQ4_K:
    case QuantType::kQ5_K: {
      float step = 0;
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        ScaleMinK4(j, block + 4, &sc, &m);
        step = std::max(step, LoadF16(block) * sc);
      }
      return step / 2;
    }
    case QuantType::kQ6_K: {
      float step = 0;
      for (int j = 0; j < 16; ++j) {
        const auto sc = static_cast<int8_t>(block[192 + j]);
        step = std::max(step, LoadF16(block + 208) * std::abs(sc));
      }
      return step / 2;
    }
  }
  return 0;
}

}  // namespace iquest
