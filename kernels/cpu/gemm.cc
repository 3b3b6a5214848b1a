#include <optional>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/ops.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest::cpu {

void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) {
  const int64_t m_size = a.dim(0);
  const int64_t k_size = a.dim(1);
  const int64_t n_size = w.dim(0);
  CHECK_EQ(w.dim(1), k_size);
  CHECK(out.ShapeIs({m_size, n_size})) << out.ShapeString();
  CHECK(bias.empty() || bias.ShapeIs({n_size})) << bias.ShapeString();
  CHECK(IsFloat(a.dtype())) << DTypeName(a.dtype());
  // A 16-bit `a` (gemm_input_dtype of a GPU backend) widens exactly to f32, once: the sums are
  // then those of the f32 path given the same values.
  std::vector<float> a_widened;
  if (a.dtype() != DType::kF32) {
    a_widened.resize(static_cast<size_t>(a.numel()));
    for (int64_t i = 0; i < a.numel(); ++i) a_widened[i] = LoadAsFloat(a.data(), a.dtype(), i);
  }
  const float* a_data = a.dtype() == DType::kF32 ? a.as<float>() : a_widened.data();
  float* out_data = out.as<float>();
  // Each weight row is widened to f32 once and reused for every row of `a`. Row m's result
  // depends only on row m, so a token's output is the same whatever batch it is in.
  // A quantized row is dequantized whole (kernels/quant), exactly as the format defines it.
  std::vector<float> w_row(static_cast<size_t>(k_size));
  const std::optional<QuantType> quant = QuantTypeOf(w.dtype());
  CHECK(quant || IsFloat(w.dtype())) << DTypeName(w.dtype());
  for (int64_t n = 0; n < n_size; ++n) {
    if (quant) {
      Dequantize(*quant, static_cast<const uint8_t*>(w.Rows(n, 1).data()), k_size, w_row.data());
    } else {
      for (int64_t k = 0; k < k_size; ++k)
        w_row[k] = LoadAsFloat(w.data(), w.dtype(), n * k_size + k);
    }
    const float b = bias.empty() ? 0.0f : LoadAsFloat(bias.data(), bias.dtype(), n);
    for (int64_t m = 0; m < m_size; ++m) {
      const float* a_row = a_data + m * k_size;
      float sum = 0.0f;
      for (int64_t k = 0; k < k_size; ++k) sum += a_row[k] * w_row[k];
      out_data[m * n_size + n] = sum + b;
    }
  }
}

}  // namespace iquest::cpu
