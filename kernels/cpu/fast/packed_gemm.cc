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

namespace {

// Panels [begin, end) of `packed` from the row-major weight `src` [n, k]: element (k, col) of
// panel p lands at [k / group][col][k % group]; rows past n are zero. Writes are sequential.
template <typename T>
void PackPanels(const T* src, const PackedWeight& packed, int64_t begin, int64_t end) {
  const int64_t group = packed.k_group;
  for (int64_t p = begin; p < end; ++p) {
    T* panel =
        reinterpret_cast<T*>(packed.data.get() + static_cast<size_t>(p) * packed.panel_bytes);
    for (int64_t k0 = 0; k0 < packed.k; k0 += group) {
      for (int64_t col = 0; col < kPanelWidth; ++col) {
        const int64_t row = p * kPanelWidth + col;
        for (int64_t g = 0; g < group; ++g) {
          *panel++ = row < packed.n ? src[row * packed.k + k0 + g] : T{0};
        }
      }
    }
  }
}

}  // namespace

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

  const void* src = w.data();
  PackedWeight* dst = packed.get();
  pool.ParallelFor(packed->num_panels, [&](int64_t begin, int64_t end) {
    if (element_bytes == 4) {
      PackPanels(static_cast<const uint32_t*>(src), *dst, begin, end);
    } else {
      PackPanels(static_cast<const uint16_t*>(src), *dst, begin, end);
    }
  });
  return packed;
}

void PackRowsBf16Pairs(const float* a, int64_t m, int64_t k, int64_t row_begin, int64_t row_end,
                       uint32_t* out) {
  CHECK_EQ(row_begin % kDotBlockRows, 0);
  const int64_t pairs = k / 2;
  for (int64_t b = row_begin / kDotBlockRows; b * kDotBlockRows < row_end; ++b) {
    uint32_t* block = out + b * pairs * kDotBlockRows;
    for (int64_t r = 0; r < kDotBlockRows; ++r) {
      const int64_t row = b * kDotBlockRows + r;
      if (row >= m) {
        for (int64_t j = 0; j < pairs; ++j) block[j * kDotBlockRows + r] = 0;
        continue;
      }
      const float* src = a + row * k;
      for (int64_t j = 0; j < pairs; ++j) {
        block[j * kDotBlockRows + r] = static_cast<uint32_t>(FloatToBf16(src[2 * j])) |
                                       static_cast<uint32_t>(FloatToBf16(src[2 * j + 1])) << 16;
      }
    }
  }
}

}  // namespace iquest::cpu
