// MakeBackend: the one place that knows every backend. It sits above backend.h (the interface)
// and the implementations (cpu/, cpu/fast/, cuda/), so the interface depends on none of them.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace iquest {

enum class Device { kCpu, kCuda };

// The backend for `device`; kUnavailable when this build or machine has no such device,
// InvalidArgument / FailedPrecondition for options this machine cannot honour.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(Device device,
                                                     const BackendOptions& options = {});

}  // namespace iquest
