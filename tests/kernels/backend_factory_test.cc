// MakeBackend's answers on this machine: the CPU always; CUDA only where a device is usable, and
// otherwise kUnavailable naming the flag (the server turns it into a startup error).
#include <gtest/gtest.h>

#include "kernels/backend.h"
#include "kernels/make_backend.h"

namespace iquest {
namespace {

TEST(BackendFactoryTest, CudaWithoutADeviceIsUnavailableNamingTheFlag) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(Device::kCuda);
  if (backend.ok()) GTEST_SKIP() << "this machine has a CUDA device: " << (*backend)->name();
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable) << backend.status();
  EXPECT_NE(backend.status().message().find("--device=cuda"), std::string::npos)
      << backend.status();
}

TEST(BackendFactoryTest, UnknownGemmIsAnErrorWhereCudaExists) {
  BackendOptions options;
  options.gemm = "fastest";
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(Device::kCuda, options);
  ASSERT_FALSE(backend.ok());
  // No device: kUnavailable comes first; with one, the flag's value is rejected.
  EXPECT_TRUE(backend.status().code() == absl::StatusCode::kUnavailable ||
              backend.status().code() == absl::StatusCode::kInvalidArgument)
      << backend.status();
}

TEST(BackendFactoryTest, CpuBackendsPreferAnF32Cache) {
  auto backend = MakeBackend(Device::kCpu);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->preferred_kv_dtype(), DType::kF32);
}

}  // namespace
}  // namespace iquest
