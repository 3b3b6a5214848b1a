// f16 / bf16 conversions against independent references: the compiler's own _Float16
// conversion (libgcc, round to nearest even) and an exact double-precision rounding for bf16.
#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace iquest {
namespace {

TEST(F16Test, EveryBitPatternWidensLikeTheCompiler) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    _Float16 reference;
    const uint16_t half = static_cast<uint16_t>(bits);
    std::memcpy(&reference, &half, sizeof(half));
    const float expected = static_cast<float>(reference);
    const float actual = F16ToFloat(half);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(actual)) << bits;
    } else {
      EXPECT_EQ(FloatBits(actual), FloatBits(expected)) << "bits " << bits;
    }
  }
}

TEST(F16Test, NarrowingRoundsToNearestEvenLikeTheCompiler) {
  std::mt19937 engine(1);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 2'000'000; ++i) {
    // Random bit patterns cover NaN, infinities, subnormals, overflow and exact ties.
    const float value = BitsToFloat(any_bits(engine));
    const _Float16 reference = static_cast<_Float16>(value);
    uint16_t expected;
    std::memcpy(&expected, &reference, sizeof(expected));
    const uint16_t actual = FloatToF16(value);
    if (std::isnan(value)) {
      EXPECT_EQ(actual & 0x7c00, 0x7c00);
      EXPECT_NE(actual & 0x03ff, 0);
    } else {
      ASSERT_EQ(actual, expected) << "value " << value;
    }
  }
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);  // Largest finite.
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);  // Ties away to infinity (even).
  EXPECT_EQ(FloatToF16(-0.0f), 0x8000);
}

// Exact nearest-even rounding of an f32 to bf16 computed in double.
uint16_t ReferenceBf16(float value) {
  const uint32_t bits = FloatBits(value);
  const float truncated = BitsToFloat(bits & 0xffff0000u);
  const uint32_t next_bits = (bits & 0xffff0000u) + 0x10000u;
  // Past the largest finite bf16 the next step up is infinity, reached at 2^128 in RNE terms.
  const double next_value = (next_bits & 0x7fffffffu) == 0x7f800000u
                                ? std::copysign(std::ldexp(1.0, 128), value)
                                : static_cast<double>(BitsToFloat(next_bits));
  const float next = BitsToFloat(next_bits);
  const double below = std::fabs(static_cast<double>(value) - truncated);
  const double above = std::fabs(next_value - value);
  const bool even = ((bits >> 16) & 1u) == 0;
  const bool round_up = above < below || (above == below && !even);
  return static_cast<uint16_t>((round_up ? FloatBits(next) : FloatBits(truncated)) >> 16);
}

TEST(Bf16Test, NarrowingRoundsToNearestEven) {
  std::mt19937 engine(2);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 2'000'000; ++i) {
    const float value = BitsToFloat(any_bits(engine));
    if (!std::isfinite(value)) continue;
    ASSERT_EQ(FloatToBf16(value), ReferenceBf16(value)) << "value " << value;
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808000u)), 0x3f80);  // Tie, even stays.
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f818000u)), 0x3f82);  // Tie, odd rounds up.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(BitsToFloat(0x7f800001u)))));  // sNaN stays NaN.
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(Bf16Test, WideningIsExact) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float value = Bf16ToFloat(static_cast<uint16_t>(bits));
    if (!std::isnan(value)) {
      EXPECT_EQ(FloatToBf16(value), bits);
    }
  }
}

}  // namespace
}  // namespace iquest
