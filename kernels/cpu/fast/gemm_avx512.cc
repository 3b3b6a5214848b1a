// AVX-512 micro-kernels over packed panels (see packed_gemm.h). Compiled with AVX-512 flags and
// only called after CPUID said yes.
//
// Blocking: a call gets a contiguous range of panels (one contiguous weight stream). For a
// block of up to kMaxRows activation rows it walks K once per panel pair, holding
// rows x 32 outputs in registers. With more rows, K is cut into slices so that a panel pair's
// slice stays in L1 while every row block reuses it; the partial sums then go through `out`.
// Up to kPairOuterMaxRows rows (batched decode) a pair's slices are walked in K order; beyond
// (prefill) each K slice is walked over all panels, keeping the activations' slice in L2.
#include <immintrin.h>

#include <algorithm>

#include "common/check.h"
#include "kernels/cpu/fast/packed_gemm.h"

namespace iquest::cpu {
namespace {

constexpr int kMaxRows = kDotBlockRows;
// How far ahead of the current k step (in bytes of one panel's stream) the kernels prefetch
// weights. Measured on the 2-core Zen 5 box, bf16 GEMV 8192x2048 streamed from DRAM, 2 threads:
// none 33 GB/s, 1 KiB 41, 2 KiB 45-51, 4 KiB 48-50 (1 thread: none 19, 2 KiB 32).
#ifndef IQUEST_GEMM_PREFETCH_BYTES
#define IQUEST_GEMM_PREFETCH_BYTES 2048
#endif
constexpr int64_t kPrefetchBytes = IQUEST_GEMM_PREFETCH_BYTES;

inline void PrefetchAhead(const void* step) {
  if constexpr (kPrefetchBytes > 0) {
    _mm_prefetch(static_cast<const char*>(step) + kPrefetchBytes, _MM_HINT_T0);
  }
}
// k values per slice when rows > kMaxRows (multiples of 2). Measured (iquest-bench-gemm, bf16,
// 2 threads, medians of 5 over several runs): batched decode M=32, 8192 x 2048: ~590 GFLOP/s
// with 256 vs ~565 with 512; prefill M=512, 8192 x 2048: 256 ~575, 512 ~620, 1024 ~655; M=512,
// 2048 x 8192: 512 ~545, 1024 ~590.
constexpr int64_t kDecodeKBlock = 256;
constexpr int64_t kPrefillKBlock = 1024;
constexpr int64_t kPairOuterMaxRows =
    64;  // k values per slice when rows > kMaxRows (a multiple of 2).

// Valid output columns of panel p, as a store mask.
__mmask16 ColumnMask(const PackedWeight& w, int64_t p) {
  const int64_t cols = std::min<int64_t>(kPanelWidth, w.n - p * kPanelWidth);
  return static_cast<__mmask16>((1u << cols) - 1u);
}

// Loads one k step of a packed f32/f16 panel as 16 f32 lanes (one per output column).
template <DType kDType>
inline __m512 LoadStep(const uint8_t* panel, int64_t step) {
  if constexpr (kDType == DType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(panel) + step * kPanelWidth);
  } else {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
        reinterpret_cast<const uint16_t*>(panel) + step * kPanelWidth)));
  }
}

// rows x (16 * kPanels) outputs of panels p.. over k in [k_begin, k_end).
// kMode: 0 = exact f32/f16 (one k per step), 1 = exact bf16 (k pairs split by shift/mask),
// 2 = bf16 dot (VDPBF16PS on bf16-rounded activations).
template <int kRows, int kPanels, int kMode, DType kDType>
void MicroKernel(const GemmArgs& g, int64_t p, int64_t row0, int64_t k_begin, int64_t k_end,
                 bool accumulate) {
  const PackedWeight& w = *g.w;
  const int64_t k_size = w.k;
  const int64_t n_size = w.n;
  __m512 acc[kRows][kPanels];
  __mmask16 masks[kPanels];
  for (int j = 0; j < kPanels; ++j) masks[j] = ColumnMask(w, p + j);
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < kPanels; ++j) {
      acc[r][j] = accumulate ? _mm512_maskz_loadu_ps(
                                   masks[j], g.out + (row0 + r) * n_size + (p + j) * kPanelWidth)
                             : _mm512_setzero_ps();
    }
  }
  const uint8_t* panels[kPanels];
  for (int j = 0; j < kPanels; ++j) panels[j] = w.panel(p + j);
  if constexpr (kMode == 0) {
    const float* a = g.a + row0 * k_size;
    for (int64_t k = k_begin; k < k_end; ++k) {
      __m512 wv[kPanels];
      for (int j = 0; j < kPanels; ++j) {
        // One 64-byte line holds 1 (f32) or 2 (f16) k steps; one prefetch per step is cheap.
        PrefetchAhead(panels[j] + k * kPanelWidth * (kDType == DType::kF32 ? 4 : 2));
        wv[j] = LoadStep<kDType>(panels[j], k);
      }
      for (int r = 0; r < kRows; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * k_size + k]);
        for (int j = 0; j < kPanels; ++j) acc[r][j] = _mm512_fmadd_ps(av, wv[j], acc[r][j]);
      }
    }
  } else if constexpr (kMode == 1) {
    const float* a = g.a + row0 * k_size;
    const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int64_t k = k_begin; k < k_end; k += 2) {
      __m512 even[kPanels], odd[kPanels];
      for (int j = 0; j < kPanels; ++j) {
        const uint16_t* step = reinterpret_cast<const uint16_t*>(panels[j]) + k * kPanelWidth;
        PrefetchAhead(step);
        const __m512i v = _mm512_loadu_si512(step);
        even[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        odd[j] = _mm512_castsi512_ps(_mm512_and_si512(v, high_half));
      }
      for (int r = 0; r < kRows; ++r) {
        const __m512 a0 = _mm512_set1_ps(a[r * k_size + k]);
        const __m512 a1 = _mm512_set1_ps(a[r * k_size + k + 1]);
        for (int j = 0; j < kPanels; ++j) {
          acc[r][j] = _mm512_fmadd_ps(a0, even[j], acc[r][j]);
          acc[r][j] = _mm512_fmadd_ps(a1, odd[j], acc[r][j]);
        }
      }
    }
  } else {
    // Block row0 / 8 of the packed activations: one k step is 8 consecutive 32-bit words, each
    // the pair (a[r][k], a[r][k + 1]) in bf16.
    const uint32_t* a_step = g.a_pairs + (row0 / kDotBlockRows) * (k_size / 2) * kDotBlockRows +
                             k_begin / 2 * kDotBlockRows;
    for (int64_t k = k_begin; k < k_end; k += 2, a_step += kDotBlockRows) {
      __m512i wv[kPanels];
      for (int j = 0; j < kPanels; ++j) {
        const uint16_t* step = reinterpret_cast<const uint16_t*>(panels[j]) + k * kPanelWidth;
        // The first row block brings the weights in; the others find them in L1.
        if (row0 == 0) PrefetchAhead(step);
        wv[j] = _mm512_loadu_si512(step);
      }
      for (int r = 0; r < kRows; ++r) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(a_step[r]));
        for (int j = 0; j < kPanels; ++j) {
          acc[r][j] = _mm512_dpbf16_ps(acc[r][j], reinterpret_cast<const __m512bh&>(av),
                                       reinterpret_cast<const __m512bh&>(wv[j]));
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < kPanels; ++j) {
      _mm512_mask_storeu_ps(g.out + (row0 + r) * n_size + (p + j) * kPanelWidth, masks[j],
                            acc[r][j]);
    }
  }
}

template <int kPanels, int kMode, DType kDType>
void RowBlock(const GemmArgs& g, int64_t p, int64_t row0, int64_t rows, int64_t k_begin,
              int64_t k_end, bool accumulate) {
  switch (rows) {
#define IQUEST_ROWS_CASE(R)                                                         \
  case R:                                                                           \
    MicroKernel<R, kPanels, kMode, kDType>(g, p, row0, k_begin, k_end, accumulate); \
    break;
    IQUEST_ROWS_CASE(1)
    IQUEST_ROWS_CASE(2)
    IQUEST_ROWS_CASE(3)
    IQUEST_ROWS_CASE(4)
    IQUEST_ROWS_CASE(5)
    IQUEST_ROWS_CASE(6)
    IQUEST_ROWS_CASE(7)
    IQUEST_ROWS_CASE(8)
#undef IQUEST_ROWS_CASE
    default:
      CHECK(false) << "row block of " << rows;
  }
}

template <int kMode, DType kDType>
void PanelPair(const GemmArgs& g, int64_t p, bool pair, int64_t k_begin, int64_t k_end) {
  const bool accumulate = k_begin > 0;
  for (int64_t row0 = 0; row0 < g.m; row0 += kMaxRows) {
    const int64_t rows = std::min<int64_t>(kMaxRows, g.m - row0);
    if (pair) {
      RowBlock<2, kMode, kDType>(g, p, row0, rows, k_begin, k_end, accumulate);
    } else {
      RowBlock<1, kMode, kDType>(g, p, row0, rows, k_begin, k_end, accumulate);
    }
  }
}

template <int kMode, DType kDType>
void Panels(const GemmArgs& g, int64_t panel_begin, int64_t panel_end) {
  const int64_t k_size = g.w->k;
  if (g.m <= kPairOuterMaxRows) {
    // One pass over K when all rows fit in registers (decode): the weights stream exactly once.
    const int64_t k_block = g.m <= kMaxRows ? k_size : kDecodeKBlock;
    // Batched decode: a panel pair at a time, K slice by slice, so the weights stream in order
    // and each slice is reused by every row block while it is in L1; all rows' activations
    // (<= 64 x K bf16) stay in L2.
    for (int64_t p = panel_begin; p < panel_end; p += 2) {
      for (int64_t k_begin = 0; k_begin < k_size; k_begin += k_block) {
        PanelPair<kMode, kDType>(g, p, p + 1 < panel_end, k_begin,
                                 std::min(k_size, k_begin + k_block));
      }
    }
    return;
  }
  // Prefill: a K slice at a time over all panels, so the activations' slice (rows x
  // kPrefillKBlock) stays in L2 while the weights stream past it.
  const int64_t k_block = kPrefillKBlock;
  for (int64_t k_begin = 0; k_begin < k_size; k_begin += k_block) {
    for (int64_t p = panel_begin; p < panel_end; p += 2) {
      PanelPair<kMode, kDType>(g, p, p + 1 < panel_end, k_begin,
                               std::min(k_size, k_begin + k_block));
    }
  }
}

}  // namespace

void GemmPanelsAvx512(const GemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  switch (args.w->dtype) {
    case DType::kF32:
      return Panels<0, DType::kF32>(args, panel_begin, panel_end);
    case DType::kF16:
      return Panels<0, DType::kF16>(args, panel_begin, panel_end);
    case DType::kBF16:
      return Panels<1, DType::kBF16>(args, panel_begin, panel_end);
    default:
      CHECK(false) << "packed weights are f32, f16 or bf16";
  }
}

void GemmPanelsAvx512Bf16Dot(const GemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  CHECK(args.w->dtype == DType::kBF16 && args.a_pairs != nullptr);
  Panels<2, DType::kBF16>(args, panel_begin, panel_end);
}

}  // namespace iquest::cpu
