// Element-wise activations and dtype conversion: SiluMul (the gated MLP; its output f32 or,
// rounded once, the GEMM's 16-bit input type) and f32 -> 16-bit for the GEMM's A operand.
// Memory-bound: 16-byte loads (and 16- or 8-byte stores) when the pointers and counts allow.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float Silu(float x) { return x / (1.0f + __expf(-x)); }

// count4 groups of four floats, then the scalar tail from tail_begin. TOut: float (float4
// stores), __nv_bfloat16 or __half (four 16-bit values, 8 bytes, per store).
template <typename TOut>
__global__ void SiluMulKernel(const float* gate, const float* up, TOut* out, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  // gate and up 16-byte aligned, out aligned to its four elements (16 or 8 bytes): scaling
  // out's address by 16 / (4 * sizeof(TOut)) makes that one test modulo 16.
  constexpr uintptr_t kOutScale = 16 / (4 * sizeof(TOut));
  const bool vector = (reinterpret_cast<uintptr_t>(gate) | reinterpret_cast<uintptr_t>(up) |
                       reinterpret_cast<uintptr_t>(out) * kOutScale) %
                          16 ==
                      0;
  int64_t tail_begin = 0;
  if (vector) {
    const int64_t count4 = count / 4;
    for (int64_t i = first; i < count4; i += stride) {
      const float4 g = reinterpret_cast<const float4*>(gate)[i];
      const float4 u = reinterpret_cast<const float4*>(up)[i];
      const float4 v =
          make_float4(Silu(g.x) * u.x, Silu(g.y) * u.y, Silu(g.z) * u.z, Silu(g.w) * u.w);
      if constexpr (sizeof(TOut) == 4) {
        reinterpret_cast<float4*>(out)[i] = v;
      } else {
        struct alignas(8) Four {
          TOut x, y, z, w;
        };
        reinterpret_cast<Four*>(out)[i] =
            Four{Narrow<TOut>(v.x), Narrow<TOut>(v.y), Narrow<TOut>(v.z), Narrow<TOut>(v.w)};
      }
    }
    tail_begin = count4 * 4;
  }
  for (int64_t i = tail_begin + first; i < count; i += stride) {
    out[i] = Narrow<TOut>(Silu(gate[i]) * up[i]);
  }
}

// Four floats in, four 16-bit values (8 bytes) out per step.
template <typename T>
__global__ void ConvertKernel(const float* in, T* out, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool vector =
      (reinterpret_cast<uintptr_t>(in) % 16 == 0) && (reinterpret_cast<uintptr_t>(out) % 8 == 0);
  int64_t tail_begin = 0;
  if (vector) {
    const int64_t count4 = count / 4;
    for (int64_t i = first; i < count4; i += stride) {
      const float4 v = reinterpret_cast<const float4*>(in)[i];
      struct alignas(8) Four {
        T x, y, z, w;
      };
      reinterpret_cast<Four*>(out)[i] =
          Four{Narrow<T>(v.x), Narrow<T>(v.y), Narrow<T>(v.z), Narrow<T>(v.w)};
    }
    tail_begin = count4 * 4;
  }
  for (int64_t i = tail_begin + first; i < count; i += stride) out[i] = Narrow<T>(in[i]);
}

__global__ void AddBiasKernel(float* out, const float* bias, int64_t count, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] += bias[i % n];
  }
}

}  // namespace

void AddBias(float* out, const float* bias, int64_t m, int64_t n, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  AddBiasKernel<<<GridFor(m * n, kThreads), kThreads, 0, stream>>>(out, bias, m * n, n);
  CUDA_CHECK_LAUNCH();
}

void SiluMul(const float* gate, const float* up, void* out, DType out_dtype, int64_t count,
             cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = GridFor(count / 4 + 1, kThreads);
  switch (out_dtype) {
    case DType::kF32:
      SiluMulKernel<<<blocks, kThreads, 0, stream>>>(gate, up, static_cast<float*>(out), count);
      break;
    case DType::kBF16:
      SiluMulKernel<<<blocks, kThreads, 0, stream>>>(gate, up, static_cast<__nv_bfloat16*>(out),
                                                     count);
      break;
    case DType::kF16:
      SiluMulKernel<<<blocks, kThreads, 0, stream>>>(gate, up, static_cast<__half*>(out), count);
      break;
    default:
      CHECK(false) << "SiluMul out must be a float type";
  }
  CUDA_CHECK_LAUNCH();
}

void ConvertFromF32(const float* in, void* out, DType dtype, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = GridFor(count / 4 + 1, kThreads);
  if (dtype == DType::kBF16) {
    ConvertKernel<<<blocks, kThreads, 0, stream>>>(in, static_cast<__nv_bfloat16*>(out), count);
  } else {
    CHECK(dtype == DType::kF16) << "convert to " << DTypeName(dtype);
    ConvertKernel<<<blocks, kThreads, 0, stream>>>(in, static_cast<__half*>(out), count);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
