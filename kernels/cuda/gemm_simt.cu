// The SIMT GEMM: out[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n]) with plain FMA, for any shape
// and alignment (k % 8 != 0, f32 weights) and as gpu-check's second reference. The tensor-core
// kernels are in gemm.cu (mma.sync) and gemm_sm90.cu (wgmma).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

// Plain tiled FMA GEMM: a 16 x 16 output tile per CTA, one output per thread, K in steps of 16
// through shared memory. Any shape, any alignment; A and W of any float type.
constexpr int kSimtTile = 16;
template <typename TA, typename TW>
__global__ void SimtGemmKernel(const TA* a, const TW* w, const float* bias, float* out, int m,
                               int n, int k) {
  __shared__ float a_tile[kSimtTile][kSimtTile + 1];
  __shared__ float w_tile[kSimtTile][kSimtTile + 1];
  const int tx = static_cast<int>(threadIdx.x);  // Column within the tile (n).
  const int ty = static_cast<int>(threadIdx.y);  // Row within the tile (m).
  const int row = static_cast<int>(blockIdx.y) * kSimtTile + ty;
  const int col = static_cast<int>(blockIdx.x) * kSimtTile + tx;
  const int w_row = static_cast<int>(blockIdx.x) * kSimtTile + ty;
  float sum = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kSimtTile) {
    a_tile[ty][tx] =
        (row < m && k0 + tx < k) ? ToFloat(a[static_cast<int64_t>(row) * k + k0 + tx]) : 0.0f;
    w_tile[ty][tx] =
        (w_row < n && k0 + tx < k) ? ToFloat(w[static_cast<int64_t>(w_row) * k + k0 + tx]) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtTile; ++kk) sum += a_tile[ty][kk] * w_tile[tx][kk];
    __syncthreads();
  }
  if (row < m && col < n) {
    out[static_cast<int64_t>(row) * n + col] = sum + (bias != nullptr ? bias[col] : 0.0f);
  }
}

template <typename TW>
void LaunchSimt(const GemmArgs& args, const void* a, bool a_is_f32, cudaStream_t stream) {
  const dim3 block(kSimtTile, kSimtTile);
  const dim3 grid(static_cast<unsigned>((args.n + kSimtTile - 1) / kSimtTile),
                  static_cast<unsigned>((args.m + kSimtTile - 1) / kSimtTile));
  const int m = static_cast<int>(args.m);
  const int n = static_cast<int>(args.n);
  const int k = static_cast<int>(args.k);
  const TW* w = static_cast<const TW*>(args.w);
  if (a_is_f32) {
    SimtGemmKernel<float, TW>
        <<<grid, block, 0, stream>>>(static_cast<const float*>(a), w, args.bias, args.out, m, n, k);
  } else {
    SimtGemmKernel<TW, TW>
        <<<grid, block, 0, stream>>>(static_cast<const TW*>(a), w, args.bias, args.out, m, n, k);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void GemmSimt(const GemmArgs& args, cudaStream_t stream) {
  if (args.m == 0 || args.n == 0) return;
  switch (args.dtype) {
    case DType::kBF16:
      LaunchSimt<__nv_bfloat16>(args, args.a, /*a_is_f32=*/false, stream);
      return;
    case DType::kF16:
      LaunchSimt<__half>(args, args.a, /*a_is_f32=*/false, stream);
      return;
    case DType::kF32:
      LaunchSimt<float>(args, args.a, /*a_is_f32=*/true, stream);
      return;
    default:
      break;
  }
  CHECK(false) << "GEMM of dtype " << DTypeName(args.dtype);
}

// The SIMT kernel with f32 activations and weights of any float type: CudaBackend's path for
// weights it did not upload as 16-bit and for shapes the tensor-core kernels cannot take.
void GemmF32Activations(const GemmArgs& args, const float* a_f32, cudaStream_t stream) {
  if (args.m == 0 || args.n == 0) return;
  switch (args.dtype) {
    case DType::kBF16:
      LaunchSimt<__nv_bfloat16>(args, a_f32, /*a_is_f32=*/true, stream);
      return;
    case DType::kF16:
      LaunchSimt<__half>(args, a_f32, /*a_is_f32=*/true, stream);
      return;
    case DType::kF32:
      LaunchSimt<float>(args, a_f32, /*a_is_f32=*/true, stream);
      return;
    default:
      break;
  }
  CHECK(false) << "GEMM of dtype " << DTypeName(args.dtype);
}

}  // namespace iquest::cuda
