// RmsNorm with the fused residual add: one CTA per token row. The first pass adds x into the
// residual (when given) and sums squares in f32; the second re-reads the row (from L1/L2: it was
// just read) and writes rmsnorm(row) * weight, in f32 or rounded once to the GEMM's 16-bit
// input type (Backend::gemm_input_dtype; the residual stays f32). Rows are read as float4 when
// hidden % 4 == 0.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 256;

// TOut: float, __nv_bfloat16 or __half.
template <typename TOut>
__global__ void RmsNormKernel(const float* x, float* residual, const void* weight,
                              DType weight_dtype, float eps, int64_t hidden, TOut* out) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const float* x_row = x + t * hidden;
  float* res_row = residual != nullptr ? residual + t * hidden : nullptr;
  TOut* out_row = out + t * hidden;
  // The row to normalise: x itself, or residual + x.
  const float* row = res_row != nullptr ? res_row : x_row;
  const bool vector = hidden % 4 == 0;
  float sum_squares = 0.0f;
  if (vector) {
    for (int64_t i = threadIdx.x; i < hidden / 4; i += blockDim.x) {
      float4 v = reinterpret_cast<const float4*>(x_row)[i];
      if (res_row != nullptr) {
        const float4 r = reinterpret_cast<const float4*>(res_row)[i];
        v = make_float4(v.x + r.x, v.y + r.y, v.z + r.z, v.w + r.w);
        reinterpret_cast<float4*>(res_row)[i] = v;
      }
      sum_squares += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      float v = x_row[i];
      if (res_row != nullptr) {
        v += res_row[i];
        res_row[i] = v;
      }
      sum_squares += v * v;
    }
  }
  // The barrier inside BlockSum also orders the residual writes before the re-reads below
  // (each element is re-read by the thread that wrote it anyway).
  const float total = BlockSum(sum_squares, scratch);
  const float inv_rms = rsqrtf(total / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    out_row[i] = Narrow<TOut>(row[i] * inv_rms * LoadFloat(weight, weight_dtype, i));
  }
}

}  // namespace

void RmsNorm(const float* x, float* residual, const void* weight, DType weight_dtype, float eps,
             int64_t num_tokens, int64_t hidden, void* out, DType out_dtype, cudaStream_t stream) {
  if (num_tokens == 0) return;
  const unsigned blocks = static_cast<unsigned>(num_tokens);
  switch (out_dtype) {
    case DType::kF32:
      RmsNormKernel<<<blocks, kThreads, 0, stream>>>(x, residual, weight, weight_dtype, eps, hidden,
                                                     static_cast<float*>(out));
      break;
    case DType::kBF16:
      RmsNormKernel<<<blocks, kThreads, 0, stream>>>(x, residual, weight, weight_dtype, eps, hidden,
                                                     static_cast<__nv_bfloat16*>(out));
      break;
    case DType::kF16:
      RmsNormKernel<<<blocks, kThreads, 0, stream>>>(x, residual, weight, weight_dtype, eps, hidden,
                                                     static_cast<__half*>(out));
      break;
    default:
      CHECK(false) << "RmsNorm out must be a float type";
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
