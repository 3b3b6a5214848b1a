#include "kernels/cuda/cublas_gemm.h"

#include <cublas_v2.h>
#include <dlfcn.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"

namespace iquest::cuda {

// The four entry points we call, resolved from the loaded library.
struct CublasGemm::Api {
  void* library = nullptr;
  cublasHandle_t handle = nullptr;
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
};

absl::StatusOr<std::unique_ptr<CublasGemm>> CublasGemm::Load(cudaStream_t stream) {
  auto api = std::make_unique<Api>();
  // The soname of the toolkit this was built with first, then any.
  const std::string versioned = absl::StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  for (const char* name : {versioned.c_str(), "libcublas.so"}) {
    api->library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (api->library != nullptr) break;
  }
  if (api->library == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("--gemm=cublas: cannot load ", versioned, ": ", dlerror()));
  }
  auto resolve = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api->library, symbol));
    return fn != nullptr;
  };
  if (!resolve(api->create, "cublasCreate_v2") || !resolve(api->destroy, "cublasDestroy_v2") ||
      !resolve(api->set_stream, "cublasSetStream_v2") || !resolve(api->gemm_ex, "cublasGemmEx")) {
    dlclose(api->library);
    return absl::UnavailableError("--gemm=cublas: libcublas lacks cublasGemmEx");
  }
  if (api->create(&api->handle) != CUBLAS_STATUS_SUCCESS ||
      api->set_stream(api->handle, stream) != CUBLAS_STATUS_SUCCESS) {
    dlclose(api->library);
    return absl::UnavailableError("--gemm=cublas: cublasCreate failed");
  }
  return std::unique_ptr<CublasGemm>(new CublasGemm(std::move(api)));
}

CublasGemm::CublasGemm(std::unique_ptr<Api> api) : api_(std::move(api)) {}

CublasGemm::~CublasGemm() {
  if (api_->handle != nullptr) api_->destroy(api_->handle);
  // The library stays loaded: cuBLAS registers process-exit handlers.
}

void CublasGemm::Run(const GemmArgs& args, cudaStream_t stream) {
  if (args.m == 0 || args.n == 0) return;
  const cudaDataType type = args.dtype == DType::kF16 ? CUDA_R_16F : CUDA_R_16BF;
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: out^T [n, m] = w [n, k] (op T of a k x n matrix) * a^T [k, m].
  const cublasStatus_t status = api_->gemm_ex(
      api_->handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(args.n), static_cast<int>(args.m),
      static_cast<int>(args.k), &alpha, args.w, type, static_cast<int>(args.k), args.a, type,
      static_cast<int>(args.k), &beta, args.out, CUDA_R_32F, static_cast<int>(args.n),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  CHECK(status == CUBLAS_STATUS_SUCCESS) << "cublasGemmEx: " << status;
  if (args.bias != nullptr) AddBias(args.out, args.bias, args.m, args.n, stream);
}

}  // namespace iquest::cuda
