#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "tools/gpu_check/harness.h"

namespace iquest::gpu_check {

DeviceArray::DeviceArray(size_t num_bytes) : num_bytes_(num_bytes) {
  CUDA_CHECK(cudaMalloc(&data_, std::max<size_t>(num_bytes, 1)));
}

DeviceArray::~DeviceArray() {
  if (data_ != nullptr) cudaFree(data_);
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept
    : data_(other.data_), num_bytes_(other.num_bytes_) {
  other.data_ = nullptr;
  other.num_bytes_ = 0;
}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = other.data_;
    num_bytes_ = other.num_bytes_;
    other.data_ = nullptr;
    other.num_bytes_ = 0;
  }
  return *this;
}

void DeviceArray::Upload(const void* host) {
  CUDA_CHECK(cudaMemcpy(data_, host, num_bytes_, cudaMemcpyHostToDevice));
}

void DeviceArray::Download(void* host) const {
  CUDA_CHECK(cudaMemcpy(host, data_, num_bytes_, cudaMemcpyDeviceToHost));
}

void DeviceArray::Poison() { CUDA_CHECK(cudaMemset(data_, 0xff, num_bytes_)); }

std::vector<float> RandomFloats(size_t count, std::mt19937_64& rng, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

std::vector<uint8_t> ToDType(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kBF16: {
        const uint16_t h = FloatToBf16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      case DType::kF16: {
        const uint16_t h = FloatToF16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      default:
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
        break;
    }
  }
  return bytes;
}

std::vector<float> FromDType(const std::vector<uint8_t>& bytes, DType dtype) {
  const size_t count = bytes.size() / DTypeSize(dtype);
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = LoadAsFloat(bytes.data(), dtype, i);
  return values;
}

namespace {

template <typename Ref>
double MaxRelative(const std::vector<float>& ours, const std::vector<Ref>& ref) {
  CHECK_EQ(ours.size(), ref.size());
  double max_ref = 0.0;
  double max_diff = 0.0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (!std::isfinite(ours[i])) return std::numeric_limits<double>::infinity();
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
    max_diff = std::max(max_diff, std::abs(static_cast<double>(ours[i]) - ref[i]));
  }
  return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

}  // namespace

double MaxRelativeError(const std::vector<float>& ours, const std::vector<double>& ref) {
  return MaxRelative(ours, ref);
}

double MaxRelativeError(const std::vector<float>& ours, const std::vector<float>& ref) {
  return MaxRelative(ours, ref);
}

double MedianMicros(const std::function<void()>& fn, cudaStream_t stream, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> times;
  times.reserve(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    CUDA_CHECK(cudaEventRecord(stop, stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(1000.0 * ms);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Report::Add(const Row& row) {
  Entry entry;
  entry.row = row;
  const bool error_ok = row.max_rel_err <= row.err_limit;
  const bool speed_ok =
      row.min_ratio <= 0 || (row.ours_us > 0 && row.ref_us / row.ours_us >= row.min_ratio);
  entry.pass = error_ok && speed_ok;
  if (!error_ok) entry.note = "error over limit";
  if (!speed_ok) entry.note += entry.note.empty() ? "slower than target" : ", slower than target";
  entries_.push_back(entry);
  std::fprintf(stderr, "[%s] %s %s: ours %.1f us, %s %.1f us, err %.2e\n",
               entry.pass ? "ok" : "FAIL", row.op.c_str(), row.shape.c_str(), row.ours_us,
               row.ref_name.c_str(), row.ref_us, row.max_rel_err);
}

void Report::AddCheck(const std::string& op, const std::string& shape, bool pass,
                      const std::string& note) {
  Entry entry;
  entry.row.op = op;
  entry.row.shape = shape;
  entry.timed = false;
  entry.pass = pass;
  entry.note = note;
  entries_.push_back(entry);
  std::fprintf(stderr, "[%s] %s %s: %s\n", pass ? "ok" : "FAIL", op.c_str(), shape.c_str(),
               note.c_str());
}

int Report::Print() const {
  int failures = 0;
  std::printf("\n%-28s %-34s %10s %-10s %10s %7s %6s %9s %5s  %s\n", "op", "shape", "ours_us",
              "reference", "ref_us", "ratio", "target", "max_rel", "pass", "note");
  for (const Entry& e : entries_) {
    if (!e.pass) ++failures;
    if (!e.timed) {
      std::printf("%-28s %-34s %10s %-10s %10s %7s %6s %9s %5s  %s\n", e.row.op.c_str(),
                  e.row.shape.c_str(), "-", "-", "-", "-", "-", "-", e.pass ? "yes" : "NO",
                  e.note.c_str());
      continue;
    }
    const double ratio = e.row.ours_us > 0 ? e.row.ref_us / e.row.ours_us : 0.0;
    char target[16] = "-";
    if (e.row.min_ratio > 0) std::snprintf(target, sizeof(target), ">=%.2f", e.row.min_ratio);
    std::printf("%-28s %-34s %10.1f %-10s %10.1f %7.3f %6s %9.2e %5s  %s\n", e.row.op.c_str(),
                e.row.shape.c_str(), e.row.ours_us, e.row.ref_name.c_str(), e.row.ref_us, ratio,
                target, e.row.max_rel_err, e.pass ? "yes" : "NO", e.note.c_str());
  }
  std::printf("%d of %zu rows failed\n", failures, entries_.size());
  return failures;
}

double CopyBandwidthGBs() {
  static double gbs = [] {
    const size_t bytes = size_t{2} << 30;  // 2 GiB each way: far past any L2.
    DeviceArray src(bytes), dst(bytes);
    CUDA_CHECK(cudaMemset(src.data(), 1, bytes));
    const double us = MedianMicros(
        [&] {
          CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice));
        },
        nullptr, 3, 10);
    return 2.0 * static_cast<double>(bytes) / (us * 1e3);
  }();
  return gbs;
}

double BandwidthBoundMicros(double bytes) { return bytes / (CopyBandwidthGBs() * 1e3); }

}  // namespace iquest::gpu_check
