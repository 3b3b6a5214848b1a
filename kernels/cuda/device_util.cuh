// Device helpers shared by the CUDA kernels: loads of any float dtype as f32, stores of f32 as
// any float dtype, warp and block reductions, and launch sizing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/dtype.h"

namespace iquest::cuda {

// One element of a float storage type widened to f32 (overloads, for typed kernels).
__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }

// f32 rounded to nearest even into the storage type T (float, __nv_bfloat16 or __half).
template <typename T>
__device__ __forceinline__ T Narrow(float x);
template <>
__device__ __forceinline__ float Narrow<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 Narrow<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half Narrow<__half>(float x) {
  return __float2half_rn(x);
}

// Element i of a float tensor of `dtype` (kF32, kBF16 or kF16), widened to f32.
__device__ __forceinline__ float LoadFloat(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    case DType::kF16:
      return __half2float(static_cast<const __half*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

// Element i of a float tensor of `dtype`, rounded to nearest even from f32.
__device__ __forceinline__ void StoreFloat(void* data, DType dtype, int64_t i, float value) {
  switch (dtype) {
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(value);
      return;
    case DType::kF16:
      static_cast<__half*>(data)[i] = __float2half_rn(value);
      return;
    default:
      static_cast<float*>(data)[i] = value;
      return;
  }
}

__device__ __forceinline__ float WarpSum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// The sum of `value` over the CTA, returned to every thread. `scratch` holds 32 floats; the
// function may be called again after it returns (it ends with a barrier).
__device__ __forceinline__ float BlockSum(float value, float* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int num_warps = (static_cast<int>(blockDim.x) + 31) / 32;
  value = WarpSum(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < num_warps ? scratch[lane] : 0.0f;
  value = WarpSum(value);
  __syncthreads();
  return value;
}

// Grid size for a grid-stride loop over `count` items of `threads` per CTA: enough CTAs to fill
// the device several times over, no more.
inline unsigned GridFor(int64_t count, int threads, int max_blocks = 4096) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

}  // namespace iquest::cuda
