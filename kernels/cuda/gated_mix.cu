// The Loop model's gated mix of its two attention branches (Backend::GatedAttentionMix): one
// warp per (token, head) computes the gate logit as a warp-reduced dot product of the query
// row with the head's gate weights, then writes g * global + (1 - g) * local. Memory-bound
// (three f32 rows in, one out); fused so the gate never round-trips through memory.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float LoadBias(const GatedMixArgs& a, int head) {
  switch (a.bias_dtype) {
    case DType::kBF16:
      return ToFloat(static_cast<const __nv_bfloat16*>(a.gate_bias)[head]);
    case DType::kF16:
      return ToFloat(static_cast<const __half*>(a.gate_bias)[head]);
    default:
      return static_cast<const float*>(a.gate_bias)[head];
  }
}

template <typename TWeight>
__global__ void GatedMixKernel(GatedMixArgs a, const TWeight* weight) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= a.num_tokens * a.num_heads) return;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int head = static_cast<int>(row % a.num_heads);
  const int64_t base = row * a.head_dim;
  float dot = 0.0f;
  for (int d = lane; d < a.head_dim; d += 32) {
    dot += a.q[base + d] * ToFloat(weight[static_cast<int64_t>(head) * a.head_dim + d]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
  const float g = 1.0f / (1.0f + __expf(-(dot + LoadBias(a, head))));
  for (int d = lane; d < a.head_dim; d += 32) {
    // Both read before the store: out may alias global or local (same element, same thread).
    const float global = a.global[base + d];
    const float local = a.local[base + d];
    a.out[base + d] = g * global + (1.0f - g) * local;
  }
}

}  // namespace

void GatedAttentionMix(const GatedMixArgs& args, cudaStream_t stream) {
  const int64_t rows = args.num_tokens * args.num_heads;
  if (rows == 0) return;
  const dim3 grid(static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const int threads = 32 * kWarpsPerBlock;
  switch (args.weight_dtype) {
    case DType::kBF16:
      GatedMixKernel<<<grid, threads, 0, stream>>>(
          args, static_cast<const __nv_bfloat16*>(args.gate_weight));
      break;
    case DType::kF16:
      GatedMixKernel<<<grid, threads, 0, stream>>>(args,
                                                   static_cast<const __half*>(args.gate_weight));
      break;
    default:
      GatedMixKernel<<<grid, threads, 0, stream>>>(args,
                                                   static_cast<const float*>(args.gate_weight));
      break;
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
