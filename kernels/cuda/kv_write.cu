// RoPE fused with the KV-cache write, and the copy-on-write of whole blocks.
//
// RopeWriteKv: one CTA per token. The token's cos/sin table (head_dim / 2 angles, computed in
// double as the CPU reference does: at long positions an f32 product loses whole radians) goes
// to shared memory; then each thread turns (d, d + half) pairs of q and k heads in place and, for
// k, stores both rotated values straight into the paged cache in kv.dtype, and copies v. One
// pass over q, k and v instead of three.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_util.cuh"

namespace iquest::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalfHeadDim = 256;  // head_dim up to 512.

__device__ __forceinline__ int64_t CacheOffset(const PagedKvView& kv, int64_t slot, int64_t kv_head,
                                               int64_t d) {
  const int64_t block = slot / kv.block_size;
  const int64_t in_block = slot % kv.block_size;
  return ((block * kv.num_kv_heads + kv_head) * kv.block_size + in_block) * kv.head_dim + d;
}

__global__ void RopeWriteKvKernel(const RopeKvArgs args, const PagedKvView kv) {
  __shared__ float cos_table[kMaxHalfHeadDim];
  __shared__ float sin_table[kMaxHalfHeadDim];
  const int64_t t = blockIdx.x;
  const int64_t half = args.head_dim / 2;
  const bool rotate = args.inv_freq != nullptr;
  if (rotate) {
    const double position = static_cast<double>(args.positions[t]);
    for (int64_t d = threadIdx.x; d < half; d += blockDim.x) {
      double s, c;
      sincos(position * static_cast<double>(args.inv_freq[d]), &s, &c);
      cos_table[d] = static_cast<float>(c);
      sin_table[d] = static_cast<float>(s);
    }
    __syncthreads();
  }
  const int64_t slot = args.slot_mapping != nullptr ? args.slot_mapping[t] : -1;
  // q: rotation only.
  if (rotate) {
    float* q = args.q + t * args.num_heads * args.head_dim;
    for (int64_t i = threadIdx.x; i < args.num_heads * half; i += blockDim.x) {
      const int64_t h = i / half;
      const int64_t d = i % half;
      float* head = q + h * args.head_dim;
      const float x1 = head[d];
      const float x2 = head[d + half];
      head[d] = x1 * cos_table[d] - x2 * sin_table[d];
      head[d + half] = x2 * cos_table[d] + x1 * sin_table[d];
    }
  }
  // k: rotation, then the cache.
  float* k = args.k + t * args.num_kv_heads * args.head_dim;
  for (int64_t i = threadIdx.x; i < args.num_kv_heads * half; i += blockDim.x) {
    const int64_t h = i / half;
    const int64_t d = i % half;
    float* head = k + h * args.head_dim;
    float x1 = head[d];
    float x2 = head[d + half];
    if (rotate) {
      const float r1 = x1 * cos_table[d] - x2 * sin_table[d];
      const float r2 = x2 * cos_table[d] + x1 * sin_table[d];
      x1 = r1;
      x2 = r2;
      head[d] = x1;
      head[d + half] = x2;
    }
    if (slot >= 0) {
      StoreFloat(kv.k, kv.dtype, CacheOffset(kv, slot, h, d), x1);
      StoreFloat(kv.k, kv.dtype, CacheOffset(kv, slot, h, d + half), x2);
    }
  }
  if (slot >= 0 && args.v != nullptr) {
    const float* v = args.v + t * args.num_kv_heads * args.head_dim;
    for (int64_t i = threadIdx.x; i < args.num_kv_heads * args.head_dim; i += blockDim.x) {
      const int64_t h = i / args.head_dim;
      const int64_t d = i % args.head_dim;
      StoreFloat(kv.v, kv.dtype, CacheOffset(kv, slot, h, d), v[i]);
    }
  }
}

// One CTA per (pair, pool): copies a whole block, head-major, as 16-byte words (a block is
// num_kv_heads * block_size * head_dim elements; 16-bit ones make it a multiple of 16 bytes
// for every head_dim that is a multiple of 8, and the scalar loop covers the rest).
__global__ void CopyKvBlocksKernel(const int32_t* pairs, const PagedKvView kv,
                                   int64_t block_bytes) {
  const int64_t pair = blockIdx.x;
  void* pool = blockIdx.y == 0 ? kv.k : kv.v;
  const uint8_t* src = static_cast<const uint8_t*>(pool) + pairs[2 * pair] * block_bytes;
  uint8_t* dst = static_cast<uint8_t*>(pool) + pairs[2 * pair + 1] * block_bytes;
  const int64_t words = block_bytes % 16 == 0 ? block_bytes / 16 : 0;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) {
    reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  }
  for (int64_t i = words * 16 + threadIdx.x; i < block_bytes; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void RopeWriteKv(const RopeKvArgs& args, const PagedKvView& kv, cudaStream_t stream) {
  if (args.num_tokens == 0) return;
  CHECK(args.head_dim % 2 == 0 && args.head_dim / 2 <= kMaxHalfHeadDim) << args.head_dim;
  CHECK(args.slot_mapping == nullptr || kv.head_dim == args.head_dim);
  RopeWriteKvKernel<<<static_cast<unsigned>(args.num_tokens), kThreads, 0, stream>>>(args, kv);
  CUDA_CHECK_LAUNCH();
}

void CopyKvBlocks(const int32_t* pairs, int64_t num_pairs, const PagedKvView& kv,
                  cudaStream_t stream) {
  if (num_pairs == 0) return;
  // Pool bases come from cudaMalloc (256-byte aligned); a block of an odd size makes later
  // blocks unaligned, so the 16-byte path applies only when block_bytes % 16 == 0.
  const int64_t block_bytes =
      kv.num_kv_heads * kv.block_size * kv.head_dim * static_cast<int64_t>(DTypeSize(kv.dtype));
  CopyKvBlocksKernel<<<dim3(static_cast<unsigned>(num_pairs), 2), kThreads, 0, stream>>>(
      pairs, kv, block_bytes);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iquest::cuda
