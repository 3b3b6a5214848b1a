#include <optional>

#include "common/check.h"
#include "kernels/cpu/ops.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest::cpu {

void Embed(TensorView token_ids, TensorView table, TensorView out) {
  const int64_t num_tokens = token_ids.dim(0);
  const int64_t vocab = table.dim(0);
  const int64_t hidden = table.dim(1);
  CHECK(out.ShapeIs({num_tokens, hidden})) << out.ShapeString();
  const int32_t* ids = token_ids.as<int32_t>();
  float* dst = out.as<float>();
  const std::optional<QuantType> quant = QuantTypeOf(table.dtype());
  CHECK(quant || IsFloat(table.dtype())) << DTypeName(table.dtype());
  for (int64_t t = 0; t < num_tokens; ++t) {
    CHECK(ids[t] >= 0 && ids[t] < vocab) << "token id " << ids[t] << " outside vocab " << vocab;
    if (quant) {
      Dequantize(*quant, static_cast<const uint8_t*>(table.Rows(ids[t], 1).data()), hidden,
                 dst + t * hidden);
      continue;
    }
    for (int64_t h = 0; h < hidden; ++h) {
      dst[t * hidden + h] = LoadAsFloat(table.data(), table.dtype(), ids[t] * hidden + h);
    }
  }
}

}  // namespace iquest::cpu
