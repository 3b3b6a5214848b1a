#include <cmath>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void SiluMul(TensorView gate, TensorView up, TensorView out) {
  CHECK_EQ(gate.numel(), up.numel());
  CHECK_EQ(gate.numel(), out.numel());
  const float* g = gate.as<float>();
  const float* u = up.as<float>();
  float* o = out.as<float>();
  for (int64_t i = 0; i < gate.numel(); ++i) {
    o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

}  // namespace iquest::cpu
