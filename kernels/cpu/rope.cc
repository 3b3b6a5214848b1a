#include <cmath>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {
namespace {

// Rotates every head of one token: x[d] and x[d + half] turn by angle positions * inv_freq[d].
void RotateHeads(float* x, int64_t num_heads, int64_t head_dim, const float* cos_table,
                 const float* sin_table) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    float* head = x + h * head_dim;
    for (int64_t d = 0; d < half; ++d) {
      const float x1 = head[d];
      const float x2 = head[d + half];
      head[d] = x1 * cos_table[d] - x2 * sin_table[d];
      head[d + half] = x2 * cos_table[d] + x1 * sin_table[d];
    }
  }
}

}  // namespace

void Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) {
  const int64_t num_tokens = q.dim(0);
  const int64_t head_dim = q.dim(2);
  const int64_t half = head_dim / 2;
  CHECK_EQ(k.dim(0), num_tokens);
  CHECK_EQ(k.dim(2), head_dim);
  CHECK(positions.ShapeIs({num_tokens})) << positions.ShapeString();
  CHECK(inv_freq.ShapeIs({half})) << inv_freq.ShapeString();
  const int32_t* pos = positions.as<int32_t>();
  const float* freq = inv_freq.as<float>();
  std::vector<float> cos_table(static_cast<size_t>(half));
  std::vector<float> sin_table(static_cast<size_t>(half));
  for (int64_t t = 0; t < num_tokens; ++t) {
    CHECK_GE(pos[t], 0);
    for (int64_t d = 0; d < half; ++d) {
      // The angle in double: at long positions an f32 product loses whole radians of accuracy.
      const double angle = static_cast<double>(pos[t]) * static_cast<double>(freq[d]);
      cos_table[d] = static_cast<float>(std::cos(angle));
      sin_table[d] = static_cast<float>(std::sin(angle));
    }
    RotateHeads(q.as<float>() + t * q.dim(1) * head_dim, q.dim(1), head_dim, cos_table.data(),
                sin_table.data());
    RotateHeads(k.as<float>() + t * k.dim(1) * head_dim, k.dim(1), head_dim, cos_table.data(),
                sin_table.data());
  }
}

}  // namespace iquest::cpu
