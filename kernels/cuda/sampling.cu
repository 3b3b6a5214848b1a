// SampleTokens: one filtered draw per row (temperature -> top_k -> top_p -> min_p -> draw), one
// CTA per row, no sort, no host sync, no allocation (graph-capturable); the workspace is unused.
//
// Algorithm (every quantity below is block-uniform; every pass re-reads the row, L2 permitting):
//   1. One pass: the maximum logit (and the argmax, for degenerate rows), the smallest finite
//      logit, and, when top_k is on, the histogram of the top 8 bits of each logit's
//      order-preserving uint32 key (NaN counts as -inf, -0 as +0).
//   2. top_k: MSD radix select, 8 bits per pass, of the k-th largest key by counts; ties with it
//      are kept because the filter is `key >= threshold`. Exact.
//   3. top_p: the same radix select weighted by probability mass: the largest key K such that the
//      mass of the top_k survivors with key >= K reaches top_p x their mass. Since p is monotone
//      in the logit, that K is the logit of the last member of the smallest mass-reaching prefix,
//      and `key >= K` keeps its ties. The select starts at the first bit where the candidates'
//      smallest and largest keys differ, and stops early once a whole bin is needed.
//   4. A pass of kept masses per warp segment (kept: key >= threshold and p >= min_p), the
//      target = uniform x kept mass, then the block walks the one warp segment holding it in
//      index order (per-thread chunks + a block scan) to find the first index whose running
//      mass exceeds the target.
// p_i = exp2f((l_i - max) * (log2(e) / T)) in f32 (the CUDA library's 2-ulp exp2f), and masses
// are sums of p_i rounded to fixed point (units of 2^-44; vocab <= 2^19 keeps sums below 2^63)
// in uint64: integer sums are associative, so the result is deterministic (the shared-memory
// atomics' order does not matter) and the draw is exact given the p_i.
//
// Contract against cpu::SampleTokenTraced (kernels/cpu/sampling_reference.h), in double:
//   * top_k, the maximum, NaN/-inf/±0 handling: identical (exact key comparisons).
//   * Each p_i has relative error <= eps(p) = 2^-22 + 3 * 2^-24 * |ln p| (exp2f's 2 ulp plus the
//     argument's three f32 roundings), plus <= 2^-45 absolute from the fixed-point rounding.
//     Mass-weighted, |ln p| averages at most ln(vocab) (an entropy bound; every kept set holds
//     p_max = 1), so every partial or total mass M has |M_device - M| <= eps_M * S with
//     eps_M = 2^-22 + 3 * 2^-24 * ln(vocab) + vocab * 2^-45 <= 2.7e-6 (vocab <= 2^19), S the
//     mass of the set it is drawn from.
//   * Hence the token equals the reference's whenever the trace's margins exceed
//     top_p_margin > 6e-6, draw_margin > 6e-6 (2 eps_M relative), and
//     min_p_margin > eps(min_p) ~ 2.4e-7 + 1.8e-7 |ln min_p|;
//     i.e. differences are confined to draws landing within ~6e-6 of a bucket edge (relative
//     to the kept mass) and to cumulative masses or p_i within that much of top_p or min_p.
//     Separately, a token with p < 2^-45 (fixed-point 0) is never drawn (its bucket is narrower
//     than the margin), and the reference's double-precision p ties between distinct logits
//     (adjacent floats l, l' give equal p only once T exceeds ~1e9 x |l|) are kept by the
//     reference's top_p but not here, where top_p thresholds the logit.
//   * Degenerate input: a row whose maximum is not finite (all -inf/NaN, or a +inf), or whose
//     temperature is not > 0, yields its argmax (lowest index of the largest key). top_k <= 0 or
//     >= vocab, top_p >= 1 or NaN, min_p <= 0 or NaN are off; top_p <= 0 keeps the maximum's
//     ties; min_p > 1 acts as 1; uniform is clamped into [0, 1).
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // Loads in flight per thread before their results are used.
constexpr int kDigitBits = 8;
constexpr int kBins = 1 << kDigitBits;
// Histogram replicas, indexed by lane % kCopies: lanes of one warp collide on one address at
// most 2-way even when every logit falls in the same bin (common for the top digit).
constexpr int kCopies = 16;
constexpr float kFixedOne = 0x1p44f;             // Probability 1 in fixed-point units.
constexpr int64_t kMaxVocab = int64_t{1} << 19;  // kMaxVocab * 2^44 = 2^63: sums never wrap.
constexpr unsigned kFullMask = 0xffffffffu;

static_assert(kBins == kThreads / 2, "the bin scan uses the first kBins threads as 8 warps");

// NaN counts as -inf.
__device__ __forceinline__ float Sanitize(float x) { return isnan(x) ? -INFINITY : x; }

// Order-preserving: a < b (as floats, -0 == +0) iff OrderedKey(a) < OrderedKey(b).
__device__ __forceinline__ uint32_t OrderedKey(float x) {
  const uint32_t bits = x == 0.0f ? 0u : __float_as_uint(x);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float KeyToFloat(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) != 0 ? (key & 0x7fffffffu) : ~key);
}

// The row's p = exp((x - max) / T), and its fixed-point weight.
struct RowScale {
  float max_logit;
  float log2e_over_t;  // log2(e) / T, at most FLT_MAX (so 0 * it stays 0 at the maximum)
  __device__ __forceinline__ float Prob(float x) const {
    return exp2f((x - max_logit) * log2e_over_t);
  }
};

__device__ __forceinline__ uint64_t Fixed(float p) { return __float2ull_rn(p * kFixedOne); }

__device__ __forceinline__ uint64_t WarpInclusiveScan(uint64_t v) {
  const int lane = static_cast<int>(threadIdx.x & 31);
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const uint64_t up = __shfl_up_sync(kFullMask, v, offset);
    if (lane >= offset) v += up;
  }
  return v;
}

__device__ __forceinline__ uint64_t WarpSum(uint64_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// f(index, logit) for indices threadIdx.x + j * kThreads < vocab, kUnroll loads at a time.
template <typename F>
__device__ __forceinline__ void ForEachBlockStrided(const float* __restrict__ row, int32_t vocab,
                                                    F&& f) {
  int32_t i = static_cast<int32_t>(threadIdx.x);
  for (; i + (kUnroll - 1) * kThreads < vocab; i += kUnroll * kThreads) {
    float v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldg(row + i + u * kThreads);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(i + u * kThreads, Sanitize(v[u]));
  }
  for (; i < vocab; i += kThreads) f(i, Sanitize(__ldg(row + i)));
}

// f(index, logit) for indices begin + lane + j * 32 < end (one warp's coalesced walk).
template <typename F>
__device__ __forceinline__ void ForEachWarpStrided(const float* __restrict__ row, int32_t begin,
                                                   int32_t end, F&& f) {
  int32_t i = begin + static_cast<int32_t>(threadIdx.x & 31);
  for (; i + (kUnroll - 1) * 32 < end; i += kUnroll * 32) {
    float v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldg(row + i + u * 32);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(i + u * 32, Sanitize(v[u]));
  }
  for (; i < end; i += 32) f(i, Sanitize(__ldg(row + i)));
}

struct SharedState {
  // Digit histograms, [kBins][kCopies]: uint64 masses, or (the first half) uint32 counts.
  unsigned long long hist[kBins * kCopies];
  unsigned long long warp_values[kWarps];
  uint32_t warp_keys[kWarps];
  // The selected bin: index, weight strictly above it, weight through it, the need; or the
  // draw's segment and the target within it.
  unsigned long long selected[4];
};

// The largest key K such that the weight of {tokens with floor_key <= key, key >= K} is >= need
// (weight: 1 per token, or its fixed-point mass, and then need = ceil(need_fraction x the
// total) when need_fraction >= 0). The candidates of positive weight have keys in [lo, hi].
// With count_hist_ready, the histogram of the top digit (shift 24) is already in smem.
template <bool kMass>
__device__ uint32_t RadixSelect(SharedState& s, const float* __restrict__ row, int32_t vocab,
                                const RowScale& scale, uint32_t floor_key, uint32_t lo, uint32_t hi,
                                uint64_t need, float need_fraction, bool count_hist_ready) {
  if (lo >= hi) return hi;  // One distinct key of positive weight.
  const int top_bit = 31 - __clz(static_cast<int>(lo ^ hi));
  int shift = count_hist_ready ? 32 - kDigitBits : top_bit / kDigitBits * kDigitBits;
  uint32_t prefix = static_cast<uint32_t>(static_cast<uint64_t>(hi) >> (shift + kDigitBits)
                                                                           << (shift + kDigitBits));
  const int copy = static_cast<int>(threadIdx.x % kCopies);
  uint32_t* counts = reinterpret_cast<uint32_t*>(s.hist);
  bool hist_ready = count_hist_ready;
  while (true) {
    if (!hist_ready) {
      for (int j = static_cast<int>(threadIdx.x); j < kBins * kCopies; j += kThreads) {
        if (kMass) {
          s.hist[j] = 0;
        } else {
          counts[j] = 0;
        }
      }
      __syncthreads();
      const uint64_t high = static_cast<uint64_t>(prefix) >> (shift + kDigitBits);
      ForEachBlockStrided(row, vocab, [&](int32_t, float x) {
        const uint32_t key = OrderedKey(x);
        if (key < floor_key || (static_cast<uint64_t>(key) >> (shift + kDigitBits)) != high) {
          return;
        }
        const int slot = static_cast<int>((key >> shift) & (kBins - 1)) * kCopies + copy;
        if (kMass) {
          const uint64_t w = Fixed(scale.Prob(x));
          if (w != 0) atomicAdd(&s.hist[slot], static_cast<unsigned long long>(w));
        } else {
          atomicAdd(&counts[slot], 1u);
        }
      });
      __syncthreads();
    }
    hist_ready = false;
    // Bins in descending order over the first kBins threads: the weight at or above each.
    uint64_t weight = 0;
    uint64_t through = 0;
    const int bin = kBins - 1 - static_cast<int>(threadIdx.x);
    if (threadIdx.x < kBins) {
#pragma unroll
      for (int c = 0; c < kCopies; ++c) {
        weight += kMass ? s.hist[bin * kCopies + c] : counts[bin * kCopies + c];
      }
      through = WarpInclusiveScan(weight);
      if ((threadIdx.x & 31) == 31) s.warp_values[threadIdx.x / 32] = through;
    }
    __syncthreads();
    if (threadIdx.x < kBins) {
      uint64_t total = 0;
      for (int w = 0; w < kBins / 32; ++w) {
        if (w < static_cast<int>(threadIdx.x / 32)) through += s.warp_values[w];
        total += s.warp_values[w];
      }
      if (need_fraction >= 0.0f) {
        const double want = ceil(static_cast<double>(total) * static_cast<double>(need_fraction));
        need = want >= static_cast<double>(total) ? total
                                                  : (want < 1.0 ? 1 : static_cast<uint64_t>(want));
      }
      const uint64_t above = through - weight;
      if (above < need && need <= through) {
        s.selected[0] = static_cast<unsigned long long>(bin);
        s.selected[1] = above;
        s.selected[2] = through;
        s.selected[3] = need;
      }
    }
    __syncthreads();
    const uint32_t chosen = static_cast<uint32_t>(s.selected[0]);
    const uint64_t above = s.selected[1];
    const uint64_t through_chosen = s.selected[2];
    need = s.selected[3];  // Threads >= kBins did not compute a fractional need.
    prefix |= chosen << shift;
    // All of this bin's weight is needed (or this was the last digit): the keep set {key >= K}
    // is the same for every K between the bin's low edge and its smallest member.
    if (through_chosen == need || shift == 0) return prefix;
    need -= above;
    need_fraction = -1.0f;
    shift -= kDigitBits;
    __syncthreads();  // Everyone has read `selected` before the next digit overwrites it.
  }
}

__global__ void __launch_bounds__(kThreads, 2)
    SampleKernel(const float* __restrict__ logits, const SamplingRowParams* __restrict__ params,
                 int32_t vocab, int32_t* __restrict__ out) {
  __shared__ SharedState s;
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const SamplingRowParams prm = params[blockIdx.x];
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int warp = static_cast<int>(threadIdx.x / 32);
  const bool top_k_on = prm.top_k > 0 && prm.top_k < vocab;
  const bool top_p_on = prm.top_p < 1.0f;
  const bool min_p_on = prm.min_p > 0.0f;
  const float min_p = fminf(prm.min_p, 1.0f);

  // 1. Maximum (packed with the complement of its index: the lowest index wins ties), smallest
  //    finite key, and the top-digit counts for top_k.
  uint32_t* counts = reinterpret_cast<uint32_t*>(s.hist);
  if (top_k_on) {
    for (int j = static_cast<int>(threadIdx.x); j < kBins * kCopies; j += kThreads) counts[j] = 0;
    __syncthreads();
  }
  const int copy = static_cast<int>(threadIdx.x % kCopies);
  uint64_t best = 0;
  uint32_t min_finite = 0xffffffffu;
  ForEachBlockStrided(row, vocab, [&](int32_t i, float x) {
    const uint32_t key = OrderedKey(x);
    best = max(best, static_cast<uint64_t>(key) << 32 | static_cast<uint32_t>(~i));
    if (x > -INFINITY) min_finite = min(min_finite, key);
    if (top_k_on) atomicAdd(&counts[(key >> 24) * kCopies + copy], 1u);
  });
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    best = max(best, static_cast<uint64_t>(__shfl_xor_sync(kFullMask, best, offset)));
    min_finite = min(min_finite, __shfl_xor_sync(kFullMask, min_finite, offset));
  }
  if (lane == 0) {
    s.warp_values[warp] = best;
    s.warp_keys[warp] = min_finite;
  }
  __syncthreads();
  for (int w = 0; w < kWarps; ++w) {
    best = max(best, static_cast<uint64_t>(s.warp_values[w]));
    min_finite = min(min_finite, s.warp_keys[w]);
  }
  __syncthreads();  // warp_values is reused below.
  const uint32_t max_key = static_cast<uint32_t>(best >> 32);
  const int32_t argmax = static_cast<int32_t>(~static_cast<uint32_t>(best));
  const float max_logit = KeyToFloat(max_key);
  if (!isfinite(max_logit) || !(prm.temperature > 0.0f)) {
    if (threadIdx.x == 0) out[blockIdx.x] = argmax;
    return;
  }
  RowScale scale;
  scale.max_logit = max_logit;
  scale.log2e_over_t = static_cast<float>(fmin(
      1.4426950408889634 / static_cast<double>(prm.temperature), static_cast<double>(FLT_MAX)));

  // 2-3. Thresholds on the key.
  uint32_t threshold = 0;
  if (top_k_on) {
    threshold = RadixSelect<false>(s, row, vocab, scale, 0, 0, 0xffffffffu,
                                   static_cast<uint64_t>(prm.top_k), -1.0f, true);
  }
  if (top_p_on) {
    const uint32_t lo = max(threshold, min_finite);
    threshold = max(threshold, RadixSelect<true>(s, row, vocab, scale, threshold, lo, max_key, 0,
                                                 fmaxf(prm.top_p, 0.0f), false));
  }

  // 4. Kept mass per warp segment.
  auto kept_weight = [&](float x) -> uint64_t {
    if (OrderedKey(x) < threshold) return 0;
    const float p = scale.Prob(x);
    if (min_p_on && !(p >= min_p)) return 0;
    return Fixed(p);
  };
  const int32_t segment = (vocab + kWarps - 1) / kWarps;
  const int32_t begin = min(warp * segment, vocab);
  const int32_t end = min(begin + segment, vocab);
  uint64_t mass = 0;
  ForEachWarpStrided(row, begin, end, [&](int32_t, float x) { mass += kept_weight(x); });
  mass = WarpSum(mass);
  if (lane == 0) s.warp_values[warp] = mass;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint64_t total = 0;
    for (int w = 0; w < kWarps; ++w) total += s.warp_values[w];
    const double uniform = prm.uniform > 0.0f ? static_cast<double>(prm.uniform) : 0.0;
    const double scaled = floor(uniform * static_cast<double>(total));
    const uint64_t target =
        scaled >= static_cast<double>(total) ? total - 1 : static_cast<uint64_t>(scaled);
    uint64_t before = 0;
    int w = 0;
    while (w < kWarps - 1 && before + s.warp_values[w] <= target) before += s.warp_values[w++];
    s.selected[0] = static_cast<unsigned long long>(w);
    s.selected[1] = target - before;
  }
  __syncthreads();

  // 5. The segment holding the target, in per-thread chunks, in index order.
  const int32_t seg_begin = min(static_cast<int32_t>(s.selected[0]) * segment, vocab);
  const int32_t seg_end = min(seg_begin + segment, vocab);
  const uint64_t remaining = s.selected[1];
  const int32_t chunk = (seg_end - seg_begin + kThreads - 1) / kThreads;
  const int32_t chunk_begin = min(seg_begin + static_cast<int32_t>(threadIdx.x) * chunk, seg_end);
  const int32_t chunk_end = min(chunk_begin + chunk, seg_end);
  uint64_t own = 0;
  for (int32_t i = chunk_begin; i < chunk_end; ++i) own += kept_weight(Sanitize(__ldg(row + i)));
  __syncthreads();  // warp_values is rewritten by the scan.
  const uint64_t through = WarpInclusiveScan(own);
  if (lane == 31) s.warp_values[warp] = through;
  __syncthreads();
  uint64_t before = through - own;
  for (int w = 0; w < warp; ++w) before += s.warp_values[w];
  if (before <= remaining && remaining < before + own) {
    uint64_t running = before;
    int32_t token = chunk_end - 1;
    for (int32_t i = chunk_begin; i < chunk_end; ++i) {
      running += kept_weight(Sanitize(__ldg(row + i)));
      if (running > remaining) {
        token = i;
        break;
      }
    }
    out[blockIdx.x] = token;
  }
}

}  // namespace

void SampleTokens(const float* logits, const SamplingRowParams* params, int64_t num_rows,
                  int64_t vocab, int32_t* out, void* /*workspace*/, cudaStream_t stream) {
  CHECK_GE(num_rows, 0);
  CHECK_GT(vocab, 0);
  CHECK_LE(vocab, kMaxVocab) << "fixed-point masses would overflow";
  CHECK_LE(num_rows, int64_t{0x7fffffff});
  if (num_rows == 0) return;
  SampleKernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
      logits, params, static_cast<int32_t>(vocab), out);
  CUDA_CHECK_LAUNCH();
}

size_t SamplingWorkspaceBytes(int64_t /*num_rows*/, int64_t /*vocab*/) { return 0; }

}  // namespace iquest::cuda
