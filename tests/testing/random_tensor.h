// Seeded random test data and the error measure the kernel tests share.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "common/tensor.h"

namespace iquest::testing {

inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> out(n);
  for (float& x : out) x = dist(engine);
  return out;
}

// Stores `values` as `dtype` (rounding), for weights in f16/bf16.
inline std::vector<uint8_t> Encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) StoreFromFloat(bytes.data(), dtype, i, values[i]);
  return bytes;
}

// Normwise relative error: max |actual - expected| / max |expected|. Elementwise relative error
// explodes on values near zero; this is what "relative error" means in our tolerances.
template <typename A, typename E>
double MaxRelativeError(const A& actual, const E& expected) {
  double max_diff = 0.0;
  double max_ref = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff =
        std::fabs(static_cast<double>(actual[i]) - static_cast<double>(expected[i]));
    max_diff = std::isnan(diff) ? INFINITY : std::max(max_diff, diff);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(expected[i])));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

}  // namespace iquest::testing
