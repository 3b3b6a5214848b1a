#include "kernels/cpu/fast/packed_gemm.h"

#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "kernels/cpu/fast/thread_pool.h"

namespace iquest::cpu {

bool CanPack(TensorView w) {
  if (w.rank() != 2 || w.dim(0) <= 0 || w.dim(1) <= 0) return false;
  switch (w.dtype()) {
    case DType::kF32:
    case DType::kF16:
      return true;
    case DType::kBF16:
      return w.dim(1) % 2 == 0;
    default:
      return false;
  }
}

std::unique_ptr<PackedWeight> PackWeight(TensorView w, ThreadPool& pool) {
  CHECK(CanPack(w)) << DTypeName(w.dtype()) << " " << w.ShapeString();
  auto packed = std::make_unique<PackedWeight>();
  packed->dtype = w.dtype();
  packed->n = w.dim(0);
  packed->k = w.dim(1);
  packed->num_panels = (packed->n + kPanelWidth - 1) / kPanelWidth;
  packed->k_group = w.dtype() == DType::kBF16 ? 2 : 1;
  const size_t element_bytes = DTypeSize(w.dtype());
  packed->panel_bytes = static_cast<size_t>(kPanelWidth * packed->k) * element_bytes;
  const size_t total = packed->panel_bytes * static_cast<size_t>(packed->num_panels);
  void* data = std::aligned_alloc(64, (total + 63) / 64 * 64);
  CHECK(data != nullptr) << "cannot allocate " << total << " bytes for a packed weight";
  packed->data = std::unique_ptr<uint8_t, void (*)(void*)>(static_cast<uint8_t*>(data), std::free);

  const int64_t n_size = packed->n;
  const int64_t k_size = packed->k;
  const int64_t group = packed->k_group;
  const uint8_t* src = static_cast<const uint8_t*>(w.data());
  PackedWeight* dst = packed.get();
  pool.ParallelFor(packed->num_panels, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      uint8_t* panel = dst->data.get() + static_cast<size_t>(p) * dst->panel_bytes;
      for (int64_t col = 0; col < kPanelWidth; ++col) {
        const int64_t row = p * kPanelWidth + col;
        for (int64_t k = 0; k < k_size; ++k) {
          // Element (k, col) of the panel sits at [k / group][col][k % group].
          uint8_t* to =
              panel + static_cast<size_t>(((k / group) * kPanelWidth + col) * group + k % group) *
                          element_bytes;
          if (row < n_size) {
            std::memcpy(to, src + static_cast<size_t>(row * k_size + k) * element_bytes,
                        element_bytes);
          } else {
            std::memset(to, 0, element_bytes);
          }
        }
      }
    }
  });
  return packed;
}

void RoundRowsToBf16(const float* a, int64_t num_values, uint16_t* out) {
  for (int64_t i = 0; i < num_values; ++i) out[i] = FloatToBf16(a[i]);
}

}  // namespace iquest::cpu
