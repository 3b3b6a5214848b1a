#include <cmath>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void SiluMul(TensorView gate, TensorView up, TensorView out) {
  CHECK_EQ(gate.numel(), up.numel());
  CHECK_EQ(gate.numel(), out.numel());
  CHECK(IsFloat(out.dtype())) << DTypeName(out.dtype());
  // A 16-bit out written over the f32 inputs would clobber elements not yet read.
  CHECK(out.dtype() == DType::kF32 || (out.data() != gate.data() && out.data() != up.data()))
      << "a " << DTypeName(out.dtype()) << " out must not alias gate or up";
  const float* g = gate.as<float>();
  const float* u = up.as<float>();
  // Computed in f32, then rounded once to out's dtype (round to nearest even).
  for (int64_t i = 0; i < gate.numel(); ++i) {
    StoreFromFloat(out.data(), out.dtype(), i, g[i] / (1.0f + std::exp(-g[i])) * u[i]);
  }
}

}  // namespace iquest::cpu
