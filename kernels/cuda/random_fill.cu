// FillRandom on the device: the values of kernels/random_fill.h, so that a random model made on
// the GPU equals the CPU's. A 40B-shaped model's 80 GB fill at memory speed instead of crossing
// PCIe from host generators.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/random_fill.h"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void FillRandomKernel(void* data, DType dtype, int64_t count, uint64_t seed,
                                 float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    StoreFloat(data, dtype, i, RandomUniform(seed, static_cast<uint64_t>(i), scale));
  }
}

}  // namespace

void FillRandom(void* data, DType dtype, int64_t count, uint64_t seed, float scale,
                cudaStream_t stream) {
  if (count == 0) return;
  CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16) << DTypeName(dtype);
  FillRandomKernel<<<GridFor(count, kThreads, 8192), kThreads, 0, stream>>>(data, dtype, count,
                                                                            seed, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
