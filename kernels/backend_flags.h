// The command-line flags of BackendOptions, shared by iquest-serve and the tools.
#pragma once

#include "common/flags.h"
#include "kernels/backend.h"

namespace iquest {

inline void RegisterBackendFlags(FlagParser& flags, BackendOptions* options) {
  flags.AddInt("threads", &options->num_threads,
               "CPU backend threads, counting the engine thread; 0 = every CPU", 0, 1024);
  flags.AddString("cpu-kernels", &options->cpu_kernels,
                  "CPU kernels: auto, avx2, avx512, avx512-bf16 or reference");
  flags.AddString("gemm", &options->gemm,
                  "CUDA GEMM: auto (wgmma on sm_90a, else mma.sync), mma, wgmma, simt, or cublas");
}

}  // namespace iquest
