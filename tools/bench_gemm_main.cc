// iquest-bench-gemm: one backend's Gemm on model-shaped operands, in GFLOP/s and in GB/s of
// weights, the two roofs of a CPU GEMM (performance.md: 845 GFLOP/s bf16 dot and 55 GB/s
// DRAM on the 2-core box).
//
// Weights are cold, as in a decode step: the call cycles through enough copies of the weight
// (--weight-mib in all, default 512 MiB, well past the last-level cache a core sees) that each
// call streams its weight from DRAM. For every M in --rows it times --calls calls after one
// warm-up pass over the copies, --repeats times, and prints min / median / max.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/dtype.h"
#include "common/flags.h"
#include "common/log.h"
#include "kernels/backend.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest {
namespace {

struct Figures {
  double gflops, gbps;
};

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string rows = "1,8,16,32,64,512";
  std::string dtype_name = "bf16";
  int64_t n_size = 8192, k_size = 2048, weight_mib = 512, calls = 32, repeats = 5;
  iquest::BackendOptions backend_options;
  iquest::FlagParser flags("iquest-bench-gemm",
                           "GFLOP/s and weight GB/s of the backend's Gemm, weights cold.");
  flags.AddString("rows", &rows, "comma-separated M (activation rows)");
  flags.AddInt("n", &n_size, "output columns (weight rows)", 1, 1 << 20);
  flags.AddInt("k", &k_size, "reduction length", 2, 1 << 20);
  flags.AddString("dtype", &dtype_name,
                  "weight dtype: f32, f16, bf16, or a GGUF block type (q8_0, ...)");
  flags.AddInt("weight-mib", &weight_mib, "MiB of weight copies cycled through", 1, 1 << 16);
  flags.AddInt("calls", &calls, "Gemm calls per measurement", 1, 1 << 20);
  flags.AddInt("repeats", &repeats, "measurements per M", 1, 100);
  iquest::RegisterBackendFlags(flags, &backend_options);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  iquest::SetMinLogLevel(iquest::LogLevel::kWarning);
  std::vector<int32_t> row_counts;
  if (!iquest::ParseIntList(rows, 1, 1 << 16, &row_counts).ok()) return 2;
  std::optional<iquest::DType> dtype = iquest::FloatDTypeFromName(dtype_name);
  const std::optional<iquest::QuantType> quant = iquest::QuantTypeFromName(dtype_name);
  if (quant.has_value()) dtype = iquest::DTypeOf(*quant);
  if (!dtype.has_value() ||
      (quant.has_value() && k_size % iquest::LayoutOf(*quant).block_elements != 0)) {
    std::fprintf(stderr,
                 "error: --dtype must be f32, f16, bf16, q8_0, q6_k, q5_k, q4_k or q4_0 (with --k "
                 "whole blocks), got '%s'\n",
                 dtype_name.c_str());
    return 2;
  }
  auto backend = iquest::MakeBackend(iquest::Device::kCpu, backend_options);
  if (!backend.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(backend.status().message()).c_str());
    return 1;
  }

  const size_t weight_bytes = iquest::DTypeBytes(*dtype, n_size * k_size);
  const size_t num_copies =
      std::max<size_t>(1, static_cast<size_t>(weight_mib) * (1 << 20) / weight_bytes);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<std::vector<uint8_t>> storage(num_copies);
  std::vector<iquest::TensorView> weights;
  for (auto& bytes : storage) {
    bytes.resize(weight_bytes);
    if (quant.has_value()) {
      std::vector<float> values(static_cast<size_t>(n_size * k_size));
      for (float& x : values) x = uniform(rng) * 0.05f;
      CHECK_OK(iquest::Quantize(*quant, values.data(), n_size * k_size, bytes.data()));
    } else {
      for (int64_t i = 0; i < n_size * k_size; ++i) {
        iquest::StoreFromFloat(bytes.data(), *dtype, i, uniform(rng) * 0.05f);
      }
    }
    weights.emplace_back(bytes.data(), *dtype, std::initializer_list<int64_t>{n_size, k_size});
    (*backend)->PrepareGemmWeight(weights.back());
  }

  std::printf("backend %s, weight %s [%ld, %ld] x %zu copies (%.0f MiB), %ld calls per figure\n",
              std::string((*backend)->name()).c_str(), dtype_name.c_str(), n_size, k_size,
              num_copies, static_cast<double>(num_copies * weight_bytes) / (1 << 20), calls);
  std::printf("%-6s %-32s %s\n", "M", "GFLOP/s (min/med/max)", "weight GB/s (median)");
  for (int32_t m : row_counts) {
    std::vector<float> a(static_cast<size_t>(m * k_size));
    for (float& x : a) x = uniform(rng);
    std::vector<float> out(static_cast<size_t>(m * n_size));
    const iquest::TensorView a_view(a.data(), iquest::DType::kF32, {m, k_size});
    const iquest::TensorView out_view(out.data(), iquest::DType::kF32, {m, n_size});
    size_t next = 0;
    auto call = [&] {
      (*backend)->Gemm(a_view, weights[next], iquest::TensorView(), out_view);
      next = (next + 1) % num_copies;
    };
    for (size_t i = 0; i < num_copies; ++i) call();  // Warm-up: page faults, scratch growth.
    std::vector<iquest::Figures> figures;
    for (int64_t r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      for (int64_t c = 0; c < calls; ++c) call();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      figures.push_back({2.0 * m * n_size * k_size * calls / seconds * 1e-9,
                         static_cast<double>(weight_bytes) * calls / seconds * 1e-9});
    }
    std::sort(figures.begin(), figures.end(),
              [](const auto& x, const auto& y) { return x.gflops < y.gflops; });
    const iquest::Figures& median = figures[figures.size() / 2];
    std::printf("%-6d %8.1f / %8.1f / %8.1f       %.1f\n", m, figures.front().gflops, median.gflops,
                figures.back().gflops, median.gbps);
  }
  return 0;
}
