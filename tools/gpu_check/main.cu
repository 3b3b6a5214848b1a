// iquest-gpu-check: the GPU kernels against their references (float64 on the CPU, cuBLAS) and
// their speed against cuBLAS and the measured copy bandwidth, on fresh random inputs, ending
// with one table. scripts/gpu-check.sh builds it with nvcc alone and runs it.
//   iquest-gpu-check [--quick] [--only=gemm,elementwise,attention,sampling]
// Exit status: 0 when every row passed, 1 when any failed, 77 when there is no CUDA device.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/gpu_check/harness.h"

int main(int argc, char** argv) {
  using iquest::gpu_check::Context;
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strncmp(argv[i], "--only=", 7) == 0) {
      only = argv[i] + 7;
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--only=gemm,elementwise,attention,sampling]\n",
                   argv[0]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device: nothing to check\n");
    return 77;
  }
  Context ctx;
  ctx.quick = quick;
  CUDA_CHECK(cudaGetDeviceProperties(&ctx.props, 0));
  CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  std::fprintf(stderr, "device: %s, compute %d.%d, %d SMs, %.0f MB L2; copy bandwidth %.0f GB/s\n",
               ctx.props.name, ctx.props.major, ctx.props.minor, ctx.props.multiProcessorCount,
               ctx.props.l2CacheSize / 1e6, iquest::gpu_check::CopyBandwidthGBs());
  auto wanted = [&](const char* section) {
    return only.empty() ||
           ("," + only + ",").find(std::string(",") + section + ",") != std::string::npos;
  };
  if (wanted("elementwise")) iquest::gpu_check::CheckElementwise(ctx);
  if (wanted("gemm")) iquest::gpu_check::CheckGemm(ctx);
  if (wanted("attention")) iquest::gpu_check::CheckAttention(ctx);
  if (wanted("sampling")) iquest::gpu_check::CheckSampling(ctx);
  const int failures = ctx.report.Print();
  CUDA_CHECK(cudaStreamDestroy(ctx.stream));
  return failures == 0 ? 0 : 1;
}
