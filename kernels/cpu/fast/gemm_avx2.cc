// AVX2 micro-kernels over packed panels (see packed_gemm.h): the portable fast path for x86-64
// CPUs without AVX-512. A panel's 16 columns are two 8-lane vectors; with 16 vector registers a
// block of up to 4 rows x 16 columns stays in registers. Exact f32 arithmetic only.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "kernels/cpu/fast/packed_gemm.h"

namespace iquest::cpu {
namespace {

constexpr int kMaxRows = 4;
constexpr int64_t kKBlock = 512;
// Software prefetch distance in bytes of the panel stream (see gemm_avx512.cc for the figures).
constexpr int64_t kPrefetchBytes = 2048;

// Columns [8h, 8h + 8) of one k step of a packed f32/f16 panel.
template <DType kDType>
inline __m256 LoadHalfStep(const uint8_t* panel, int64_t step, int half) {
  if constexpr (kDType == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(panel) + step * kPanelWidth + 8 * half);
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
        reinterpret_cast<const uint16_t*>(panel) + step * kPanelWidth + 8 * half)));
  }
}

template <int kRows, DType kDType>
void MicroKernel(const GemmArgs& g, int64_t p, int64_t row0, int64_t k_begin, int64_t k_end,
                 bool accumulate) {
  const PackedWeight& w = *g.w;
  const int64_t k_size = w.k;
  const int64_t n_size = w.n;
  const int64_t cols = std::min<int64_t>(kPanelWidth, n_size - p * kPanelWidth);
  __m256 acc[kRows][2];
  for (int r = 0; r < kRows; ++r) {
    float* out = g.out + (row0 + r) * n_size + p * kPanelWidth;
    if (accumulate) {
      alignas(32) float tmp[kPanelWidth] = {};
      std::memcpy(tmp, out, static_cast<size_t>(cols) * sizeof(float));
      acc[r][0] = _mm256_load_ps(tmp);
      acc[r][1] = _mm256_load_ps(tmp + 8);
    } else {
      acc[r][0] = _mm256_setzero_ps();
      acc[r][1] = _mm256_setzero_ps();
    }
  }
  const uint8_t* panel = w.panel(p);
  const float* a = g.a + row0 * k_size;
  if constexpr (kDType == DType::kBF16) {
    const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int64_t k = k_begin; k < k_end; k += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(panel) + k * kPanelWidth * 2 + kPrefetchBytes,
                   _MM_HINT_T0);
      __m256 even[2], odd[2];
      for (int h = 0; h < 2; ++h) {
        // 8 columns x (k, k + 1).
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            reinterpret_cast<const uint16_t*>(panel) + k * kPanelWidth + 16 * h));
        even[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        odd[h] = _mm256_castsi256_ps(_mm256_and_si256(v, high_half));
      }
      for (int r = 0; r < kRows; ++r) {
        const __m256 a0 = _mm256_set1_ps(a[r * k_size + k]);
        const __m256 a1 = _mm256_set1_ps(a[r * k_size + k + 1]);
        for (int h = 0; h < 2; ++h) {
          acc[r][h] = _mm256_fmadd_ps(a0, even[h], acc[r][h]);
          acc[r][h] = _mm256_fmadd_ps(a1, odd[h], acc[r][h]);
        }
      }
    }
  } else {
    constexpr int64_t kStepBytes = kPanelWidth * (kDType == DType::kF32 ? 4 : 2);
    for (int64_t k = k_begin; k < k_end; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(panel) + k * kStepBytes + kPrefetchBytes,
                   _MM_HINT_T0);
      const __m256 w0 = LoadHalfStep<kDType>(panel, k, 0);
      const __m256 w1 = LoadHalfStep<kDType>(panel, k, 1);
      for (int r = 0; r < kRows; ++r) {
        const __m256 av = _mm256_set1_ps(a[r * k_size + k]);
        acc[r][0] = _mm256_fmadd_ps(av, w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(av, w1, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    float* out = g.out + (row0 + r) * n_size + p * kPanelWidth;
    if (cols == kPanelWidth) {
      _mm256_storeu_ps(out, acc[r][0]);
      _mm256_storeu_ps(out + 8, acc[r][1]);
    } else {
      alignas(32) float tmp[kPanelWidth];
      _mm256_store_ps(tmp, acc[r][0]);
      _mm256_store_ps(tmp + 8, acc[r][1]);
      std::memcpy(out, tmp, static_cast<size_t>(cols) * sizeof(float));
    }
  }
}

template <DType kDType>
void Panels(const GemmArgs& g, int64_t panel_begin, int64_t panel_end) {
  const int64_t k_size = g.w->k;
  const int64_t k_block = g.m <= kMaxRows ? k_size : kKBlock;
  for (int64_t k_begin = 0; k_begin < k_size; k_begin += k_block) {
    const int64_t k_end = std::min(k_size, k_begin + k_block);
    const bool accumulate = k_begin > 0;
    for (int64_t p = panel_begin; p < panel_end; ++p) {
      for (int64_t row0 = 0; row0 < g.m; row0 += kMaxRows) {
        switch (std::min<int64_t>(kMaxRows, g.m - row0)) {
          case 1:
            MicroKernel<1, kDType>(g, p, row0, k_begin, k_end, accumulate);
            break;
          case 2:
            MicroKernel<2, kDType>(g, p, row0, k_begin, k_end, accumulate);
            break;
          case 3:
            MicroKernel<3, kDType>(g, p, row0, k_begin, k_end, accumulate);
            break;
          default:
            MicroKernel<4, kDType>(g, p, row0, k_begin, k_end, accumulate);
            break;
        }
      }
    }
  }
}

}  // namespace

void GemmPanelsAvx2(const GemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  switch (args.w->dtype) {
    case DType::kF32:
      return Panels<DType::kF32>(args, panel_begin, panel_end);
    case DType::kF16:
      return Panels<DType::kF16>(args, panel_begin, panel_end);
    case DType::kBF16:
      return Panels<DType::kBF16>(args, panel_begin, panel_end);
    default:
      CHECK(false) << "packed weights are f32, f16 or bf16";
  }
}

}  // namespace iquest::cpu
