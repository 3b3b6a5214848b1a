#include <cmath>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void CheckGatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                            TensorView global, TensorView local, TensorView out) {
  CHECK_EQ(q.rank(), 3);
  const int64_t num_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  CHECK(gate_weight.ShapeIs({num_heads, head_dim})) << gate_weight.ShapeString();
  CHECK(gate_bias.ShapeIs({num_heads})) << gate_bias.ShapeString();
  CHECK(IsFloat(gate_weight.dtype()) && IsFloat(gate_bias.dtype()));
  for (const TensorView* t : {&q, &global, &local, &out}) {
    CHECK(t->ShapeIs({q.dim(0), num_heads, head_dim})) << t->ShapeString();
    CHECK(t->dtype() == DType::kF32) << DTypeName(t->dtype());
  }
}

void GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                       TensorView global, TensorView local, TensorView out) {
  CheckGatedAttentionMix(q, gate_weight, gate_bias, global, local, out);
  const int64_t num_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  for (int64_t t = 0; t < q.dim(0); ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t base = (t * num_heads + h) * head_dim;
      float logit = LoadAsFloat(gate_bias.data(), gate_bias.dtype(), h);
      for (int64_t d = 0; d < head_dim; ++d) {
        logit += q.as<float>()[base + d] *
                 LoadAsFloat(gate_weight.data(), gate_weight.dtype(), h * head_dim + d);
      }
      const float g = 1.0f / (1.0f + std::exp(-logit));
      for (int64_t d = 0; d < head_dim; ++d) {
        // Read both before the store: out may alias global or local.
        const float a = global.as<float>()[base + d];
        const float b = local.as<float>()[base + d];
        out.as<float>()[base + d] = g * a + (1.0f - g) * b;
      }
    }
  }
}

}  // namespace iquest::cpu
