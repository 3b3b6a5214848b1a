// GGUF's quantized block formats, defined once: ggml's Q4_0, Q8_0, Q4_K, Q5_K and Q6_K (the
// types of llama.cpp's Q4_0, Q8_0, Q4_K_M, Q5_K_M and Q6_K files). A row of n weights is n / QK
// blocks back to back, each block self-contained (its own f16 scales), little-endian:
//
//   type  QK   bytes  layout (weight w of a block is y = ...)
//   Q4_0   32   18    f16 d, u8 qs[16]: w < 16 low nibble of qs[w], else high nibble of
//                     qs[w - 16]; y = d * (q - 8)
//   Q8_0   32   34    f16 d, i8 qs[32]; y = d * qs[w]
//   Q4_K  256  144    f16 d, f16 dmin, u8 scales[12] (8 six-bit scale/min pairs), u8 qs[128];
//                     sub-block j (32 weights) has y = d * sc[j] * q - dmin * m[j], q 4 bits
//   Q5_K  256  176    as Q4_K, then u8 qh[32] before qs: q gains a fifth (high) bit
//   Q6_K  256  210    u8 ql[128], u8 qh[64], i8 scales[16], f16 d; sub-block j (16 weights)
//                     has y = d * scales[j] * (q - 32), q 6 bits
//
// The bit placements are ggml's (ggml-quants.c, dequantize_row_*); Dequantize computes in f32 in
// ggml's order, so its outputs are bit-exact to ggml's and to any decoder that follows the
// format (tests/kernels/ggml_quant_test.py holds an independent NumPy one).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace iquest {

// The values are ggml's type ids, as GGUF tensor infos store them.
enum class QuantType : uint32_t { kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14 };

struct QuantLayout {
  int64_t block_elements = 0;  // QK: weights per block.
  int64_t block_bytes = 0;
};

QuantLayout LayoutOf(QuantType type);  // From common/dtype.h's BlockOf.
// The DType of tensors of `type` (kQ4_0, ...), and back; nullopt for the dense dtypes.
DType DTypeOf(QuantType type);
std::optional<QuantType> QuantTypeOf(DType dtype);
const char* QuantTypeName(QuantType type);  // "q4_0", "q8_0", "q4_k", "q5_k", "q6_k"
// The quantized type with ggml id `ggml_type`; nullopt for float and unsupported types.
std::optional<QuantType> QuantTypeOfGgmlType(uint32_t ggml_type);
std::optional<QuantType> QuantTypeFromName(std::string_view name);

// Bytes that `num_elements` weights take: InvalidArgument unless num_elements is a positive
// multiple of the block size (a row never splits a block).
absl::StatusOr<int64_t> QuantizedBytes(QuantType type, int64_t num_elements);

// Checks that every block's f16 scales are finite (a NaN or infinite scale poisons a whole
// block): InvalidArgument naming the first bad block. Every bit pattern of the quants is valid.
absl::Status ValidateBlocks(QuantType type, const uint8_t* blocks, int64_t num_elements);

// out[0, num_elements) = the weights of the blocks. num_elements is a multiple of the block size
// (CHECKed).
void Dequantize(QuantType type, const uint8_t* blocks, int64_t num_elements, float* out);

// Writes QuantizedBytes(type, num_elements) bytes of blocks that hold x: InvalidArgument for a
// non-finite weight or a block whose scale overflows f16 (|x| above ~65504 * QK-levels). Scales
// are rounded up to f16, so nothing clamps except Q4_0's top level (ggml's choice: the largest
// |x| maps to -8); every weight comes back within MaxQuantizationError of itself, plus f32
// rounding.
absl::Status Quantize(QuantType type, const float* x, int64_t num_elements, uint8_t* blocks);

// The bound Quantize keeps for the block at `block` (one block's bytes), read from its scales:
// half its sub-blocks' largest step d * sc (Q8_0: d / 2; Q4_0: d, its clamped top level).
float MaxQuantizationError(QuantType type, const uint8_t* block);

}  // namespace iquest
