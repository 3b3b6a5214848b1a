#include "kernels/backend.h"

#include "kernels/cpu/cpu_backend.h"

namespace iquest {

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(Device device) {
  switch (device) {
    case Device::kCpu:
      return std::unique_ptr<Backend>(std::make_unique<CpuBackend>());
    case Device::kCuda:
      return absl::UnavailableError(
          "--device=cuda: this build has no CUDA backend (it arrives with kernels/cuda/)");
  }
  return absl::InvalidArgumentError("unknown device");
}

}  // namespace iquest
