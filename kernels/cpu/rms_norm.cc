#include <cmath>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps, TensorView out) {
  const int64_t num_tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  CHECK(out.ShapeIs({num_tokens, hidden})) << out.ShapeString();
  CHECK(weight.ShapeIs({hidden})) << weight.ShapeString();
  CHECK(residual.empty() || residual.ShapeIs({num_tokens, hidden})) << residual.ShapeString();
  const float* x_data = x.as<float>();
  float* out_data = out.as<float>();
  float* residual_data = residual.empty() ? nullptr : residual.as<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    // The row to normalise: x itself, or residual + x written back into residual.
    const float* row = x_data + t * hidden;
    if (residual_data != nullptr) {
      float* res_row = residual_data + t * hidden;
      for (int64_t h = 0; h < hidden; ++h) res_row[h] += row[h];
      row = res_row;
    }
    float sum_squares = 0.0f;
    for (int64_t h = 0; h < hidden; ++h) sum_squares += row[h] * row[h];
    const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(hidden) + eps);
    for (int64_t h = 0; h < hidden; ++h) {
      out_data[t * hidden + h] = row[h] * inv_rms * LoadAsFloat(weight.data(), weight.dtype(), h);
    }
  }
}

}  // namespace iquest::cpu
