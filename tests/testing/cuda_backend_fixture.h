// The CUDA backend tests' helpers (cuda_backend_test.cc, cuda_attention_test.cc): the backend
// or a skip where there is no device, device copies of host data, NaN-poisoned outputs, and
// the tolerances (normwise relative): 1e-5 where the GPU computes in f32, 1e-2 where an operand
// is rounded to 16 bits.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace iquest::testing {

inline constexpr double kF32Tolerance = 1e-5;
inline constexpr double k16BitTolerance = 1e-2;

// The CUDA backend with `gemm`, or null (the test skips) when there is no device.
inline std::unique_ptr<cuda::CudaBackend> MakeCuda(const std::string& gemm = "auto") {
  BackendOptions options;
  options.gemm = gemm;
  absl::StatusOr<std::unique_ptr<cuda::CudaBackend>> backend = cuda::CudaBackend::Create(options);
  if (!backend.ok()) return nullptr;
  return std::move(*backend);
}

#define SKIP_WITHOUT_GPU(backend) \
  if ((backend) == nullptr) GTEST_SKIP() << "no CUDA device"

// A device copy of host bytes, viewed with `shape`; freed with the object.
struct DeviceTensor {
  std::unique_ptr<DeviceBuffer> buffer;
  TensorView view;
};

inline DeviceTensor ToDevice(Backend& backend, const void* host, DType dtype,
                             std::initializer_list<int64_t> shape) {
  const TensorView probe(nullptr, dtype, shape);
  auto buffer = backend.Allocate(probe.num_bytes());
  CHECK(buffer.ok()) << buffer.status();
  backend.CopyToDevice(host, (*buffer)->data(), probe.num_bytes());
  DeviceTensor t{std::move(*buffer), TensorView()};
  t.view = TensorView(t.buffer->data(), dtype, shape);
  return t;
}

// An f32 device tensor poisoned with NaN.
inline DeviceTensor Poisoned(Backend& backend, std::initializer_list<int64_t> shape) {
  const TensorView probe(nullptr, DType::kF32, shape);
  std::vector<float> nan(static_cast<size_t>(probe.numel()), NAN);
  return ToDevice(backend, nan.data(), DType::kF32, shape);
}

template <typename T>
std::vector<T> ToHost(Backend& backend, const DeviceTensor& t) {
  std::vector<T> host(t.view.num_bytes() / sizeof(T));
  backend.CopyToHost(t.view.data(), host.data(), t.view.num_bytes());
  return host;
}

}  // namespace iquest::testing
