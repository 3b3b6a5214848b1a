#include "kernels/backend.h"

#include <algorithm>
#include <vector>

#include "common/check.h"
#include "kernels/random_fill.h"

namespace iquest {

void Backend::FillRandom(TensorView t, uint64_t seed, float scale) {
  CHECK(IsFloat(t.dtype())) << DTypeName(t.dtype());
  const int64_t count = t.numel();
  const size_t element_bytes = DTypeSize(t.dtype());
  constexpr int64_t kChunk = int64_t{1} << 20;
  std::vector<uint8_t> chunk(static_cast<size_t>(std::min(count, kChunk)) * element_bytes);
  for (int64_t begin = 0; begin < count; begin += kChunk) {
    const int64_t n = std::min(kChunk, count - begin);
    for (int64_t i = 0; i < n; ++i) {
      StoreFromFloat(chunk.data(), t.dtype(), i,
                     RandomUniform(seed, static_cast<uint64_t>(begin + i), scale));
    }
    CopyToDevice(chunk.data(), static_cast<uint8_t*>(t.data()) + begin * element_bytes,
                 static_cast<size_t>(n) * element_bytes);
  }
}

}  // namespace iquest
