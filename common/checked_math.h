// Overflow-checked unsigned 64-bit arithmetic for sizes read from files: every count, dim and
// offset from a header goes through these before it sizes anything.
#pragma once

#include <cstdint>
#include <optional>

namespace iquest {

inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t out;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

inline std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace iquest
