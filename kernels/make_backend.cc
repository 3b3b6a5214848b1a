#include "kernels/make_backend.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fast/cpu_isa.h"
#include "kernels/cpu/fast/fast_cpu_backend.h"
#include "kernels/cpu/fast/thread_pool.h"
#ifdef IQUEST_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace iquest {

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(Device device, const BackendOptions& options) {
  switch (device) {
    case Device::kCpu: {
      if (options.num_threads < 0 || options.num_threads > 1024) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--threads must be in [0, 1024] (0 = all CPUs), got ", options.num_threads));
      }
      if (options.cpu_kernels == "reference") {
        return std::unique_ptr<Backend>(std::make_unique<CpuBackend>());
      }
      absl::StatusOr<cpu::CpuIsa> isa = cpu::ResolveCpuIsa(options.cpu_kernels);
      if (!isa.ok()) return isa.status();
      const int threads = options.num_threads == 0 ? cpu::AvailableCpus() : options.num_threads;
      return std::unique_ptr<Backend>(std::make_unique<cpu::FastCpuBackend>(*isa, threads));
    }
    case Device::kCuda: {
#ifdef IQUEST_HAVE_CUDA
      absl::StatusOr<std::unique_ptr<cuda::CudaBackend>> backend =
          cuda::CudaBackend::Create(options);
      if (!backend.ok()) return backend.status();
      return std::unique_ptr<Backend>(std::move(*backend));
#else
      return absl::UnavailableError(
          "--device=cuda: this build has no CUDA backend (nvcc was not found when it was "
          "configured)");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown device");
}

}  // namespace iquest
