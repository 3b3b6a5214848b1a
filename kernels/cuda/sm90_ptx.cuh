// PTX wrappers of the Hopper (sm_90a) instructions gemm_sm90.cu is built from: mbarriers,
// TMA tile loads, wgmma matrix descriptors and the m64nNk16 wgmma itself with its fence, commit
// and wait. The device code exists only in the sm_90a pass (__CUDA_ARCH_FEAT_SM90_ALL).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace iquest::cuda::sm90_ptx {

// 8 rows x 128 B: the repeat unit of the 128-byte swizzle that TMA writes and wgmma reads (the
// host sizes shared memory with it too).
inline constexpr int kSwizzleAtomBytes = 1024;

}  // namespace iquest::cuda::sm90_ptx

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
namespace iquest::cuda::sm90_ptx {

__device__ __forceinline__ uint32_t SmemAddr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void BarrierInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

// Arms the barrier's current phase with the bytes the TMA loads will deliver (and counts the
// producer's one arrival).
__device__ __forceinline__ void BarrierArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void BarrierArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

// Returns once the phase with parity `parity` has completed.
__device__ __forceinline__ void BarrierWait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (done == 0);
}

// 2-D TMA load of one box at (k_elem, row) into shared memory; completes `bar`'s transaction
// bytes. A CTA-local shared address is a valid shared::cluster address (cluster of one).
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                          int k_elem, int row) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k_elem), "r"(row), "r"(bar)
      : "memory");
}

__device__ __forceinline__ void PrefetchTensorMap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// wgmma shared-memory matrix descriptor of a K-major tile written by TMA with 128B swizzle:
// rows of 128 bytes (64 K elements), 8-row atoms of 1024 bytes.
//   bits  0-13: start address >> 4 (the shared window is < 256 KB, so 18 address bits)
//   bits 16-29: leading byte offset >> 4; unused for swizzled K-major layouts (the K extent
//               of one wgmma, 32 bytes, stays inside the 128-byte swizzle row); set to 1
//   bits 32-45: stride byte offset >> 4 = 1024 >> 4: from one 8-row atom to the next
//   bits 49-51: base offset = 0 (every tile base is 1024-byte aligned)
//   bits 62-63: swizzle mode, 1 = 128B
// Stepping K by 16 elements inside the 128-byte row adds 32 bytes to the start address; the
// hardware applies the XOR swizzle to the final address bits, which is why the tile bases
// must be atom aligned.
__device__ __forceinline__ uint64_t MakeSmemDesc(uint32_t smem_addr) {
  uint64_t desc = static_cast<uint64_t>((smem_addr & 0x3FFFFu) >> 4);
  desc |= uint64_t{1} << 16;
  desc |= uint64_t{kSwizzleAtomBytes >> 4} << 32;
  desc |= uint64_t{1} << 62;
  return desc;
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accumulator reads/writes across the asynchronous wgmma
// window (it does not know the asm writes them later).
template <int kN>
__device__ __forceinline__ void FenceAccumulators(float (&acc)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(acc[i])::"memory");
}

// wgmma.mma_async m64nNk16, D (f32, registers) += A (smem desc) * B (smem desc), both K-major.
// Operands: scale-d = 1 (accumulate; the accumulators start at zero), scale-a = scale-b = 1,
// trans-a = trans-b = 0. Fragment of D: thread t of the warpgroup, warp w = t / 32, lane l;
// register i holds row 16 w + l / 4 + 8 ((i / 2) % 2), column 8 (i / 4) + 2 (l % 4) + i % 2.
template <int kN>
struct Wgmma;

#define IQ_ACC8(d, i)                                                                             \
  "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define IQ_WGMMA_REGS_32                               \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, " \
  "%12, %13, %14, %15"
#define IQ_WGMMA_ACC_32(d) IQ_ACC8(d, 0), IQ_ACC8(d, 8)
#define IQ_WGMMA_REGS_64                                         \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "           \
  "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31"
#define IQ_WGMMA_ACC_64(d) IQ_ACC8(d, 0), IQ_ACC8(d, 8), IQ_ACC8(d, 16), IQ_ACC8(d, 24)
#define IQ_WGMMA_REGS_128                                        \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "           \
  "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, " \
  "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, " \
  "%60, %61, %62, %63"
#define IQ_WGMMA_ACC_128(d)                                                                     \
  IQ_ACC8(d, 0), IQ_ACC8(d, 8), IQ_ACC8(d, 16), IQ_ACC8(d, 24), IQ_ACC8(d, 32), IQ_ACC8(d, 40), \
      IQ_ACC8(d, 48), IQ_ACC8(d, 56)
#define IQ_WGMMA_REGS_256                                                    \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "                       \
  "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "             \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "             \
  "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "             \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, "             \
  "%60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, "             \
  "%72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, "             \
  "%84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "             \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, "     \
  "%108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, " \
  "%120, %121, %122, %123, %124, %125, %126, %127"
#define IQ_WGMMA_ACC_256(d)                                                                     \
  IQ_ACC8(d, 0), IQ_ACC8(d, 8), IQ_ACC8(d, 16), IQ_ACC8(d, 24), IQ_ACC8(d, 32), IQ_ACC8(d, 40), \
      IQ_ACC8(d, 48), IQ_ACC8(d, 56), IQ_ACC8(d, 64), IQ_ACC8(d, 72), IQ_ACC8(d, 80),           \
      IQ_ACC8(d, 88), IQ_ACC8(d, 96), IQ_ACC8(d, 104), IQ_ACC8(d, 112), IQ_ACC8(d, 120)

// kN: wgmma N; kR = kN / 2 accumulator registers; kR1 = kR + 1 (the B descriptor's operand).
#define IQ_DEFINE_WGMMA(kN, kR, kR1)                                                               \
  template <>                                                                                      \
  struct Wgmma<kN> {                                                                               \
    template <bool kBf16>                                                                          \
    static __device__ __forceinline__ void Run(float (&d)[kR], uint64_t desc_a, uint64_t desc_b) { \
      if constexpr (kBf16) {                                                                       \
        asm volatile("wgmma.mma_async.sync.aligned.m64n" #kN                                       \
                     "k16.f32.bf16.bf16 {" IQ_WGMMA_REGS_##kN "}, %" #kR ", %" #kR1                \
                                                              ", 1, 1, 1, 0, 0;"                   \
                     : IQ_WGMMA_ACC_##kN(d)                                                        \
                     : "l"(desc_a), "l"(desc_b)                                                    \
                     : "memory");                                                                  \
      } else {                                                                                     \
        asm volatile("wgmma.mma_async.sync.aligned.m64n" #kN                                       \
                     "k16.f32.f16.f16 {" IQ_WGMMA_REGS_##kN "}, %" #kR ", %" #kR1                  \
                                                            ", 1, 1, 1, 0, 0;"                     \
                     : IQ_WGMMA_ACC_##kN(d)                                                        \
                     : "l"(desc_a), "l"(desc_b)                                                    \
                     : "memory");                                                                  \
      }                                                                                            \
    }                                                                                              \
  };

IQ_DEFINE_WGMMA(32, 16, 17)
IQ_DEFINE_WGMMA(64, 32, 33)
IQ_DEFINE_WGMMA(128, 64, 65)
IQ_DEFINE_WGMMA(256, 128, 129)

#undef IQ_DEFINE_WGMMA
#undef IQ_WGMMA_REGS_32
#undef IQ_WGMMA_REGS_64
#undef IQ_WGMMA_REGS_128
#undef IQ_WGMMA_REGS_256
#undef IQ_WGMMA_ACC_32
#undef IQ_WGMMA_ACC_64
#undef IQ_WGMMA_ACC_128
#undef IQ_WGMMA_ACC_256
#undef IQ_ACC8

}  // namespace iquest::cuda::sm90_ptx
#endif  // __CUDA_ARCH__ && __CUDA_ARCH_FEAT_SM90_ALL
