// cuBLAS GEMM reached through dlopen, for --gemm=cublas: a comparison point for our kernels in
// the product itself, without linking cuBLAS into every binary (it is over 500 MB with cuBLASLt,
// and only tests link it directly).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda {

class CublasGemm {
 public:
  // kUnavailable when libcublas cannot be loaded or initialised.
  static absl::StatusOr<std::unique_ptr<CublasGemm>> Load(cudaStream_t stream);
  ~CublasGemm();

  // args.a and args.w 16-bit of args.dtype; out f32 (= a * w^T), then the bias added by a
  // separate pass when args.bias is set (cuBLAS's GemmEx has no bias epilogue).
  void Run(const GemmArgs& args, cudaStream_t stream);

 private:
  struct Api;
  explicit CublasGemm(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

}  // namespace iquest::cuda
