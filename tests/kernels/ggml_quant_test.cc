// Quantize -> dequantize stays within each type's bound; malformed blocks and rows are errors.
// (Bit-exactness of Dequantize against an independent NumPy decoder: ggml_quant_test.py.)
#include "kernels/quant/ggml_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace iquest {
namespace {

constexpr QuantType kAllTypes[] = {QuantType::kQ4_0, QuantType::kQ8_0, QuantType::kQ4_K,
                                   QuantType::kQ5_K, QuantType::kQ6_K};

class GgmlQuantTest : public ::testing::TestWithParam<QuantType> {};

// Rows of 4 super-blocks: gaussian weights at several magnitudes, plus blocks that are all
// zero, all positive, constant, all negative, and one with an outlier.
std::vector<float> TestWeights(float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(4 * 256);
  for (float& v : x) v = normal(rng);
  for (int i = 0; i < 32; ++i) {
    x[32 + i] = 0.0f;
    x[64 + i] = std::fabs(x[64 + i]) + scale;
    x[96 + i] = 0.75f * scale;
    x[128 + i] = -std::fabs(x[128 + i]);
  }
  x[300] = 40 * scale;
  return x;
}

TEST_P(GgmlQuantTest, RoundTripIsWithinTheTypesBound) {
  const QuantType type = GetParam();
  const QuantLayout layout = LayoutOf(type);
  for (float scale : {1e-5f, 0.02f, 1.0f, 300.0f}) {
    const std::vector<float> x = TestWeights(scale, 7);
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<uint8_t> blocks(QuantizedBytes(type, n).value());
    ASSERT_TRUE(Quantize(type, x.data(), n, blocks.data()).ok());
    ASSERT_TRUE(ValidateBlocks(type, blocks.data(), n).ok());
    std::vector<float> y(n);
    Dequantize(type, blocks.data(), n, y.data());
    double sum_sq_err = 0, sum_sq = 0;
    for (int64_t b = 0; b < n / layout.block_elements; ++b) {
      const float bound = MaxQuantizationError(type, blocks.data() + b * layout.block_bytes);
      float amax = 0;
      for (int64_t i = 0; i < layout.block_elements; ++i) {
        amax = std::max(amax, std::fabs(x[b * layout.block_elements + i]));
      }
      // Half a step, plus f32 rounding of the few operations on values up to ~2 * amax.
      const float allowed = bound + 4e-7f * amax;
      for (int64_t i = b * layout.block_elements; i < (b + 1) * layout.block_elements; ++i) {
        ASSERT_LE(std::fabs(x[i] - y[i]), allowed)
            << QuantTypeName(type) << " scale " << scale << " weight " << i << ": " << x[i]
            << " came back as " << y[i];
        sum_sq_err += (x[i] - y[i]) * double{x[i] - y[i]};
        sum_sq += x[i] * double{x[i]};
      }
    }
    // The bound above is per weight; the relative RMS error says the scales are not wasted:
    // a 4-bit type errs by about 1/10 of the signal's RMS, 8 bits by about 1/100 (most of it
    // from the block with the 40-sigma outlier, whose step is 16 times the others').
    const double relative_rms = std::sqrt(sum_sq_err / sum_sq);
    const double limit = type == QuantType::kQ8_0   ? 0.015
                         : type == QuantType::kQ6_K ? 0.04
                         : type == QuantType::kQ5_K ? 0.06
                                                    : 0.13;
    EXPECT_LT(relative_rms, limit) << QuantTypeName(type) << " scale " << scale;
  }
}

TEST_P(GgmlQuantTest, ZeroWeightsComeBackZero) {
  const QuantType type = GetParam();
  const std::vector<float> x(256, 0.0f);
  std::vector<uint8_t> blocks(QuantizedBytes(type, 256).value());
  ASSERT_TRUE(Quantize(type, x.data(), 256, blocks.data()).ok());
  std::vector<float> y(256, 1.0f);
  Dequantize(type, blocks.data(), 256, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST_P(GgmlQuantTest, NonFiniteScalesAreErrorsNamingTheBlock) {
  const QuantType type = GetParam();
  const QuantLayout layout = LayoutOf(type);
  const std::vector<float> x = TestWeights(1.0f, 3);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> blocks(QuantizedBytes(type, n).value());
  ASSERT_TRUE(Quantize(type, x.data(), n, blocks.data()).ok());
  const int scale_offset = type == QuantType::kQ6_K ? 208 : 0;
  for (uint16_t bad : {uint16_t{0x7e00}, uint16_t{0x7c00}, uint16_t{0xfc00}}) {  // NaN, +-inf
    std::vector<uint8_t> copy = blocks;
    const int64_t last = n / layout.block_elements - 1;
    std::memcpy(&copy[last * layout.block_bytes + scale_offset], &bad, 2);
    const absl::Status status = ValidateBlocks(type, copy.data(), n);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("block " + std::to_string(last)), std::string::npos) << status;
  }
}

TEST_P(GgmlQuantTest, RowsOfPartialBlocksAreErrors) {
  const QuantType type = GetParam();
  const int64_t qk = LayoutOf(type).block_elements;
  EXPECT_EQ(QuantizedBytes(type, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizedBytes(type, -qk).status().code(), absl::StatusCode::kInvalidArgument);
  const absl::Status partial = QuantizedBytes(type, qk + 1).status();
  EXPECT_EQ(partial.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(partial.message().find(std::to_string(qk)), std::string::npos) << partial;
  EXPECT_EQ(QuantizedBytes(type, 3 * qk).value(), 3 * LayoutOf(type).block_bytes);
}

TEST_P(GgmlQuantTest, NonFiniteOrHugeWeightsAreQuantizeErrors) {
  const QuantType type = GetParam();
  std::vector<uint8_t> blocks(QuantizedBytes(type, 256).value());
  for (float bad : {std::nanf(""), INFINITY, 1e30f}) {
    std::vector<float> x(256, 1.0f);
    x[200] = bad;
    const absl::Status status = Quantize(type, x.data(), 256, blocks.data());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_P(GgmlQuantTest, TypeIdsAndNamesRoundTrip) {
  const QuantType type = GetParam();
  EXPECT_EQ(QuantTypeOfGgmlType(static_cast<uint32_t>(type)), type);
  EXPECT_EQ(QuantTypeFromName(QuantTypeName(type)), type);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgmlQuantTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(QuantTypeName(info.param)); });

TEST(GgmlQuantTypes, LayoutsAreTheGgufFormats) {
  EXPECT_EQ(LayoutOf(QuantType::kQ4_0).block_bytes, 18);
  EXPECT_EQ(LayoutOf(QuantType::kQ8_0).block_bytes, 34);
  EXPECT_EQ(LayoutOf(QuantType::kQ4_K).block_bytes, 144);
  EXPECT_EQ(LayoutOf(QuantType::kQ5_K).block_bytes, 176);
  EXPECT_EQ(LayoutOf(QuantType::kQ6_K).block_bytes, 210);
  // F32, F16, BF16 and types we do not read (Q4_1 = 3, Q2_K = 10, IQ4_NL = 20) are not quant
  // types here.
  for (uint32_t id : {0u, 1u, 30u, 3u, 10u, 20u, 99u}) EXPECT_FALSE(QuantTypeOfGgmlType(id));
}

}  // namespace
}  // namespace iquest
