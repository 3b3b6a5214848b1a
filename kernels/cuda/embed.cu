// Embed: a row gather, out[t, :] = table[ids[t], :] widened to f32. One CTA per token; the
// model also uses it to pick the rows whose logits were asked for (an f32 table).
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void EmbedKernel(const int32_t* ids, const void* table, DType table_dtype, int64_t width,
                            float* out) {
  const int64_t t = blockIdx.x;
  // Ids were validated on the host (BatchInputs); a bad one here is a bug, not input.
  const int64_t row = ids[t];
  const int64_t base = row * width;
  float* dst = out + t * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    dst[i] = LoadFloat(table, table_dtype, base + i);
  }
}

}  // namespace

void Embed(const int32_t* ids, int64_t num_tokens, const void* table, DType table_dtype,
           int64_t width, float* out, cudaStream_t stream) {
  if (num_tokens == 0 || width == 0) return;
  EmbedKernel<<<static_cast<unsigned>(num_tokens), kThreads, 0, stream>>>(ids, table, table_dtype,
                                                                          width, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
