// Row reductions of the logits, one CTA per row.
// Argmax: each thread scans a strided slice keeping (value, index), then a warp and a block
// reduction. Ties and NaN follow the CPU reference: the lowest index wins ties, and NaN never
// compares greater, so it never wins.
// TokenLogprobs: logits[token] - logsumexp(row), the sampled token's logprob, as the CPU's
// LogSumExp computes it (max first; float exponentials of x - max, summed in double).
#include <cfloat>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 512;

// Whether (value_a, index_a) beats (value_b, index_b).
__device__ __forceinline__ bool Better(float value_a, int32_t index_a, float value_b,
                                       int32_t index_b) {
  return value_a > value_b || (value_a == value_b && index_a < index_b) ||
         (index_b < 0 && index_a >= 0);
}

// The warp's best (value, index) in every lane.
__device__ __forceinline__ void WarpArgmax(float& best, int32_t& best_index) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int32_t other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (Better(other, other_index, best, best_index)) {
      best = other;
      best_index = other_index;
    }
  }
}

__global__ void ArgmaxKernel(const float* logits, int64_t vocab, int32_t* out) {
  __shared__ float best_values[32];
  __shared__ int32_t best_indices[32];
  const float* row = logits + blockIdx.x * vocab;
  float best = -FLT_MAX;
  int32_t best_index = -1;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float value = row[v];
    // A strided scan sees increasing indices, so ">" keeps the lowest on ties.
    if (best_index < 0 ? !(value != value) : value > best) {
      best = value;
      best_index = static_cast<int32_t>(v);
    }
  }
  WarpArgmax(best, best_index);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if (lane == 0) {
    best_values[warp] = best;
    best_indices[warp] = best_index;
  }
  __syncthreads();
  if (warp == 0) {
    const int num_warps = static_cast<int>(blockDim.x) / 32;
    best = lane < num_warps ? best_values[lane] : -FLT_MAX;
    best_index = lane < num_warps ? best_indices[lane] : -1;
    WarpArgmax(best, best_index);
    // A row of NaN only: index 0, as the CPU reference's scan gives.
    if (lane == 0) out[blockIdx.x] = best_index < 0 ? 0 : best_index;
  }
}

// Block-wide reduction of one value per thread; every thread gets the result.
template <typename T, typename Op>
__device__ T BlockReduce(T value, Op op, T* shared /* [32] */) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int num_warps = static_cast<int>(blockDim.x) / 32;
  __syncthreads();  // `shared` may still be read from a previous call.
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  value = shared[0];
  for (int w = 1; w < num_warps; ++w) value = op(value, shared[w]);
  return value;
}

__global__ void TokenLogprobsKernel(const float* logits, int64_t vocab, const int32_t* tokens,
                                    float* out) {
  __shared__ float max_shared[32];
  __shared__ double sum_shared[32];
  const float* row = logits + blockIdx.x * vocab;
  float max_value = -INFINITY;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) max_value = fmaxf(max_value, row[v]);
  max_value = BlockReduce(
      max_value, [](float a, float b) { return fmaxf(a, b); }, max_shared);
  double sum = 0.0;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    // Below -87, exp is under float's normal range and adds nothing beside the maximum's 1.
    sum += static_cast<double>(__expf(fmaxf(row[v] - max_value, -87.0f)));
  }
  sum = BlockReduce(
      sum, [](double a, double b) { return a + b; }, sum_shared);
  if (threadIdx.x == 0) {
    const double log_total = static_cast<double>(max_value) + log(sum);
    out[blockIdx.x] = static_cast<float>(static_cast<double>(row[tokens[blockIdx.x]]) - log_total);
  }
}

}  // namespace

void TokenLogprobs(const float* logits, int64_t num_rows, int64_t vocab, const int32_t* tokens,
                   float* out, cudaStream_t stream) {
  if (num_rows == 0) return;
  CHECK_GT(vocab, 0);
  TokenLogprobsKernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, vocab,
                                                                                tokens, out);
  CUDA_CHECK_LAUNCH();
}

void Argmax(const float* logits, int64_t num_rows, int64_t vocab, int32_t* out,
            cudaStream_t stream) {
  if (num_rows == 0) return;
  CHECK_GT(vocab, 0);
  ArgmaxKernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, vocab, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
