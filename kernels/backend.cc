#include "kernels/backend.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fast/cpu_isa.h"
#include "kernels/cpu/fast/fast_cpu_backend.h"
#include "kernels/cpu/fast/thread_pool.h"
#include "kernels/random_fill.h"
#ifdef IQUEST_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace iquest {

void Backend::FillRandom(TensorView t, uint64_t seed, float scale) {
  CHECK(IsFloat(t.dtype())) << DTypeName(t.dtype());
  const int64_t count = t.numel();
  const size_t element_bytes = DTypeSize(t.dtype());
  constexpr int64_t kChunk = int64_t{1} << 20;
  std::vector<uint8_t> chunk(static_cast<size_t>(std::min(count, kChunk)) * element_bytes);
  for (int64_t begin = 0; begin < count; begin += kChunk) {
    const int64_t n = std::min(kChunk, count - begin);
    for (int64_t i = 0; i < n; ++i) {
      StoreFromFloat(chunk.data(), t.dtype(), i,
                     RandomUniform(seed, static_cast<uint64_t>(begin + i), scale));
    }
    CopyToDevice(chunk.data(), static_cast<uint8_t*>(t.data()) + begin * element_bytes,
                 static_cast<size_t>(n) * element_bytes);
  }
}

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
