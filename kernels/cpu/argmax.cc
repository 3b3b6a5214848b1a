#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void Argmax(TensorView logits, TensorView out) {
  const int64_t num_rows = logits.dim(0);
  const int64_t vocab = logits.dim(1);
  CHECK(out.ShapeIs({num_rows})) << out.ShapeString();
  CHECK_GT(vocab, 0);
  const float* data = logits.as<float>();
  int32_t* result = out.as<int32_t>();
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = data + r * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v) {
      if (row[v] > row[best]) best = v;  // Strict: the lowest index wins ties.
    }
    result[r] = static_cast<int32_t>(best);
  }
}

}  // namespace iquest::cpu
