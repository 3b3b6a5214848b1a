// The harness of iquest-gpu-check (scripts/gpu-check.sh): device buffers, random fills with
// poisoned outputs, event timing, the measured copy bandwidth, and the table printed last.
// Built with nvcc alone (no abseil or gtest), like the kernels it checks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda/cuda_check.h"

namespace iquest::gpu_check {

// A device allocation freed on destruction.
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t num_bytes);
  ~DeviceArray();
  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t num_bytes() const { return num_bytes_; }

  // Host <-> device copies of the whole array (synchronous).
  void Upload(const void* host);
  void Download(void* host) const;
  // Every byte set to 0xff: an f32 NaN, a bf16/f16 NaN, i32 -1. Outputs are poisoned before
  // every checked run so that an element the kernel never wrote cannot pass.
  void Poison();

 private:
  void* data_ = nullptr;
  size_t num_bytes_ = 0;
};

// Host values in [-scale, scale), from a seeded generator (never zeros: they hide unwritten
// outputs and wrong indexing).
std::vector<float> RandomFloats(size_t count, std::mt19937_64& rng, float scale = 1.0f);
// The same values rounded to `dtype` (kBF16/kF16: 16-bit words; kF32: the floats' bytes).
std::vector<uint8_t> ToDType(const std::vector<float>& values, DType dtype);
// And back: what the device really sees.
std::vector<float> FromDType(const std::vector<uint8_t>& bytes, DType dtype);

// max_i |ours_i - ref_i| / max_i |ref_i|: the error relative to the output's scale. Any NaN or
// inf in `ours` gives +inf, so an unwritten (poisoned) element fails.
double MaxRelativeError(const std::vector<float>& ours, const std::vector<double>& ref);
double MaxRelativeError(const std::vector<float>& ours, const std::vector<float>& ref);

// Median time of `fn` in microseconds over `iters` runs after `warmup` runs, each run timed by
// CUDA events on `stream`.
double MedianMicros(const std::function<void()>& fn, cudaStream_t stream, int warmup = 5,
                    int iters = 30);

// One row of the final table.
struct Row {
  std::string op;        // "gemm mma.sync bf16", "rms_norm", ...
  std::string shape;     // "M=1 N=4096 K=4096"
  double ours_us = 0;    // median time of our kernel
  std::string ref_name;  // "cuBLAS", "copy-bw", ...
  double ref_us = 0;     // the reference's time, or the bandwidth-bound time
  double max_rel_err = 0;
  double err_limit = 0;  // the correctness limit the error is held to
  // Speed target: ref_us / ours_us must be >= min_ratio (0: reported only).
  double min_ratio = 0;
};

class Report {
 public:
  void Add(const Row& row);
  // A check with no timing (e.g. the engine parity): pass/fail with a note.
  void AddCheck(const std::string& op, const std::string& shape, bool pass,
                const std::string& note);
  // Prints the table; returns the number of rows that missed their error limit or ratio.
  int Print() const;

 private:
  struct Entry {
    Row row;
    bool timed = true;
    bool pass = true;
    std::string note;
  };
  std::vector<Entry> entries_;
};

// The device-to-device copy bandwidth in GB/s (bytes read + written), measured once per run on
// a buffer far larger than L2: the ceiling every memory-bound kernel is held to.
double CopyBandwidthGBs();

// Microseconds that moving `bytes` (read + written) takes at CopyBandwidthGBs().
double BandwidthBoundMicros(double bytes);

struct Context {
  cudaStream_t stream = nullptr;
  cudaDeviceProp props{};
  std::mt19937_64 rng{20261129};
  Report report;
  bool quick = false;  // --quick: fewer shapes (a smoke run)
};

// The sections; each adds its rows. Defined in check_<section>.cu.
void CheckGemm(Context& ctx);
void CheckElementwise(Context& ctx);
void CheckAttention(Context& ctx);
void CheckSampling(Context& ctx);

}  // namespace iquest::gpu_check
