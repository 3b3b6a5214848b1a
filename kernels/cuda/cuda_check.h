// CUDA_CHECK wraps every CUDA runtime call, and CUDA_CHECK_LAUNCH follows every kernel launch. A
// failure there is a broken invariant (a bad launch configuration, an illegal address, a lost
// device), never a user's bad input, so it aborts with the call and the CUDA error, like CHECK.
#pragma once

#include <cuda_runtime.h>

#include "common/check.h"

#define CUDA_CHECK(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t iq_cuda_err_ = (expr);                                                      \
    CHECK(iq_cuda_err_ == cudaSuccess) << #expr << ": " << cudaGetErrorName(iq_cuda_err_) << " (" \
                                       << cudaGetErrorString(iq_cuda_err_) << ")";                \
  } while (0)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
