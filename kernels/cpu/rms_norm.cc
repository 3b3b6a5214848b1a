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
  CHECK(IsFloat(out.dtype())) << DTypeName(out.dtype());
  // A 16-bit row written over the f32 row being read would clobber it.
  CHECK(out.dtype() == DType::kF32 || (out.data() != x.data() && out.data() != residual.data()))
      << "a " << DTypeName(out.dtype()) << " out must not alias x or residual";
  const float* x_data = x.as<float>();
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
    // f32 first, then one rounding to out's dtype (round to nearest even): the same value a
    // later conversion of an f32 out would give.
    for (int64_t h = 0; h < hidden; ++h) {
      StoreFromFloat(out.data(), out.dtype(), t * hidden + h,
                     row[h] * inv_rms * LoadAsFloat(weight.data(), weight.dtype(), h));
    }
  }
}

}  // namespace iquest::cpu
