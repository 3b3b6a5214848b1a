// GEMM rows of gpu-check: every path against a float64 reference on edge shapes, then the
// decode and prefill shapes of 7B- and 40B-shaped models against cuBLAS in the same run.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_ops.h"
#include "tools/gpu_check/harness.h"

namespace iquest::gpu_check {
namespace {

#define CUBLAS_CHECK(expr)                                                     \
  do {                                                                         \
    const cublasStatus_t iq_status_ = (expr);                                  \
    CHECK(iq_status_ == CUBLAS_STATUS_SUCCESS) << #expr << ": " << iq_status_; \
  } while (0)

struct GemmShape {
  const char* model;
  const char* layer;
  int64_t n, k;
};

// [n, k] of the Linear layers of a Llama-2-7B-shaped model (hidden 4096, MLP 11008) and of
// IQuest-Coder-V1-40B (hidden 5120, 40/8 heads of 128, MLP 27648).
constexpr GemmShape kModelShapes[] = {
    {"7B", "qo", 4096, 4096},     {"7B", "gate/up", 11008, 4096}, {"7B", "down", 4096, 11008},
    {"40B", "q/o", 5120, 5120},   {"40B", "kv", 1024, 5120},      {"40B", "gate/up", 27648, 5120},
    {"40B", "down", 5120, 27648},
};

std::vector<double> ReferenceRows(const std::vector<float>& a, const std::vector<float>& w,
                                  const std::vector<float>& bias, int64_t k, int64_t n,
                                  const std::vector<int64_t>& rows) {
  std::vector<double> out(rows.size() * static_cast<size_t>(n));
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* a_row = a.data() + rows[r] * k;
    for (int64_t j = 0; j < n; ++j) {
      const float* w_row = w.data() + j * k;
      double sum = bias.empty() ? 0.0 : bias[static_cast<size_t>(j)];
      for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(a_row[i]) * w_row[i];
      out[r * static_cast<size_t>(n) + static_cast<size_t>(j)] = sum;
    }
  }
  return out;
}

std::vector<float> PickRows(const std::vector<float>& out, int64_t n,
                            const std::vector<int64_t>& rows) {
  std::vector<float> picked;
  for (int64_t r : rows)
    picked.insert(picked.end(), out.begin() + r * n, out.begin() + (r + 1) * n);
  return picked;
}

std::string ShapeName(int64_t m, int64_t n, int64_t k) {
  return "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k);
}

struct Problem {
  int64_t m, n, k;
  DType dtype;
  std::vector<float> a, w, bias;  // The 16-bit-rounded values, widened.
  DeviceArray a_dev, w_dev, bias_dev, out_dev, workspace;
};

Problem MakeProblem(Context& ctx, int64_t m, int64_t n, int64_t k, DType dtype, bool with_bias) {
  Problem p{m, n, k, dtype, {}, {}, {}, {}, {}, {}, {}, {}};
  const auto a_bytes = ToDType(RandomFloats(static_cast<size_t>(m * k), ctx.rng), dtype);
  const auto w_bytes = ToDType(RandomFloats(static_cast<size_t>(n * k), ctx.rng, 0.05f), dtype);
  p.a = FromDType(a_bytes, dtype);
  p.w = FromDType(w_bytes, dtype);
  p.a_dev = DeviceArray(a_bytes.size());
  p.a_dev.Upload(a_bytes.data());
  p.w_dev = DeviceArray(w_bytes.size());
  p.w_dev.Upload(w_bytes.data());
  if (with_bias) {
    p.bias = RandomFloats(static_cast<size_t>(n), ctx.rng);
    p.bias_dev = DeviceArray(p.bias.size() * sizeof(float));
    p.bias_dev.Upload(p.bias.data());
  }
  p.out_dev = DeviceArray(static_cast<size_t>(m * n) * sizeof(float));
  p.workspace = DeviceArray(cuda::GemmWorkspaceBytes(m, n));
  return p;
}

cuda::GemmArgs ArgsOf(const Problem& p, const void* w) {
  cuda::GemmArgs args;
  args.a = p.a_dev.data();
  args.w = w;
  args.bias = p.bias.empty() ? nullptr : p.bias_dev.as<float>();
  args.out = p.out_dev.as<float>();
  args.m = p.m;
  args.n = p.n;
  args.k = p.k;
  args.dtype = p.dtype;
  args.workspace = p.workspace.as<float>();
  args.workspace_bytes = p.workspace.num_bytes();
  return args;
}

// Runs `path` once on poisoned output and returns the error of a few rows (all of them for
// small problems) against float64.
double CheckOnce(Context& ctx, Problem& p, cuda::GemmPath path) {
  p.out_dev.Poison();
  cuda::Gemm(ArgsOf(p, p.w_dev.data()), path, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<float> out(static_cast<size_t>(p.m * p.n));
  p.out_dev.Download(out.data());
  std::vector<int64_t> rows;
  if (p.m * p.n * p.k <= (int64_t{1} << 27)) {
    for (int64_t r = 0; r < p.m; ++r) rows.push_back(r);
  } else {
    // First, last and a spread of rows between: edges of every M tile included.
    for (int64_t r : {int64_t{0}, p.m - 1, p.m / 2, int64_t{63}, int64_t{64}, int64_t{127},
                      int64_t{128}, p.m - 65}) {
      if (r >= 0 && r < p.m && std::find(rows.begin(), rows.end(), r) == rows.end()) {
        rows.push_back(r);
      }
    }
  }
  // Every element must have been written, not only the checked rows.
  for (float v : out) {
    if (!std::isfinite(v)) return std::numeric_limits<double>::infinity();
  }
  return MaxRelativeError(PickRows(out, p.n, rows),
                          ReferenceRows(p.a, p.w, p.bias, p.k, p.n, rows));
}

void CheckEdgeShapes(Context& ctx) {
  // Tile edges +-1, k not a multiple of the 64-wide K tile, k % 8 != 0 (SIMT only), n odd.
  struct Edge {
    int64_t m, n, k;
  };
  const Edge edges[] = {{1, 128, 64},      {1, 1000, 4096}, {15, 127, 72},  {17, 129, 200},
                        {63, 257, 520},    {65, 255, 1000}, {129, 384, 96}, {257, 130, 4104},
                        {300, 1027, 2048}, {3, 50, 100}};
  for (const DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Edge& e : edges) {
      for (const cuda::GemmPath path :
           {cuda::GemmPath::kSimt, cuda::GemmPath::kMmaSync, cuda::GemmPath::kWgmma}) {
        Problem p = MakeProblem(ctx, e.m, e.n, e.k, dtype, /*with_bias=*/e.m % 2 == 1);
        const cuda::GemmArgs args = ArgsOf(p, p.w_dev.data());
        if (path == cuda::GemmPath::kMmaSync && e.k % 8 != 0) continue;
        if (path == cuda::GemmPath::kWgmma) {
          int device = 0;
          CUDA_CHECK(cudaGetDevice(&device));
          if (!cuda::Sm90GemmAvailable(device) || !cuda::Sm90GemmSupports(args)) continue;
        }
        Row row;
        row.op =
            std::string("gemm ") + cuda::GemmPathName(path) + " " + std::string(DTypeName(dtype));
        row.shape = ShapeName(e.m, e.n, e.k);
        row.max_rel_err = CheckOnce(ctx, p, path);
        // Products of 16-bit values are exact in f32; only the f32 summation order differs
        // from float64.
        row.err_limit = 1e-4;
        row.ref_name = "float64";
        ctx.report.Add(row);
      }
    }
  }
}

void CheckModelShapes(Context& ctx, cublasHandle_t handle) {
  std::vector<int64_t> ms = {1, 16, 64, 256, 512, 2048, 8192};
  if (ctx.quick) ms = {1, 64, 2048};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  for (const GemmShape& shape : kModelShapes) {
    // The weights once per layer shape; the activations per M.
    Problem weights = MakeProblem(ctx, 1, shape.n, shape.k, DType::kBF16, /*with_bias=*/false);
    // Weights far past L2 for the timed runs: decode is bound by reading them, and a single
    // 32 MB copy would stay cached between repetitions. Each run reads the next copy.
    const size_t w_bytes = static_cast<size_t>(shape.n * shape.k) * 2;
    const int copies =
        static_cast<int>(std::clamp<size_t>((size_t{512} << 20) / w_bytes + 1, 1, 32));
    DeviceArray w_copies(w_bytes * copies);
    for (int c = 0; c < copies; ++c) {
      CUDA_CHECK(cudaMemcpy(static_cast<uint8_t*>(w_copies.data()) + c * w_bytes,
                            weights.w_dev.data(), w_bytes, cudaMemcpyDeviceToDevice));
    }
    int next = 0;
    auto next_w = [&] {
      next = (next + 1) % copies;
      return static_cast<const uint8_t*>(w_copies.data()) + next * w_bytes;
    };
    for (const int64_t m : ms) {
      Problem p{m, shape.n, shape.k, DType::kBF16, {}, {}, {}, {}, {}, {}, {}, {}};
      const auto a_bytes =
          ToDType(RandomFloats(static_cast<size_t>(m * shape.k), ctx.rng), DType::kBF16);
      p.a = FromDType(a_bytes, DType::kBF16);
      p.a_dev = DeviceArray(a_bytes.size());
      p.a_dev.Upload(a_bytes.data());
      p.w = weights.w;  // A copy of the host values, for the reference rows.
      p.w_dev = DeviceArray(w_bytes);
      CUDA_CHECK(
          cudaMemcpy(p.w_dev.data(), weights.w_dev.data(), w_bytes, cudaMemcpyDeviceToDevice));
      p.out_dev = DeviceArray(static_cast<size_t>(m * shape.n) * sizeof(float));
      p.workspace = DeviceArray(cuda::GemmWorkspaceBytes(m, shape.n));
      const cuda::GemmArgs base = ArgsOf(p, p.w_dev.data());
      const cuda::GemmPath path = cuda::Sm90GemmAvailable(device) && cuda::Sm90GemmSupports(base)
                                      ? cuda::GemmPath::kWgmma
                                      : cuda::GemmPath::kMmaSync;
      Row row;
      row.op = std::string("gemm ") + cuda::GemmPathName(path) + " bf16 " + shape.model + " " +
               shape.layer;
      row.shape = ShapeName(m, shape.n, shape.k);
      row.max_rel_err = CheckOnce(ctx, p, cuda::GemmPath::kAuto);
      row.err_limit = 1e-4;
      row.ours_us = MedianMicros(
          [&] {
            cuda::GemmArgs args = base;
            args.w = next_w();
            cuda::Gemm(args, cuda::GemmPath::kAuto, ctx.stream);
          },
          ctx.stream);
      const float alpha = 1.0f, beta = 0.0f;
      row.ref_us = MedianMicros(
          [&] {
            CUBLAS_CHECK(cublasGemmEx(
                handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(p.n), static_cast<int>(p.m),
                static_cast<int>(p.k), &alpha, next_w(), CUDA_R_16BF, static_cast<int>(p.k),
                p.a_dev.data(), CUDA_R_16BF, static_cast<int>(p.k), &beta, p.out_dev.data(),
                CUDA_R_32F, static_cast<int>(p.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
          },
          ctx.stream);
      row.ref_name = "cuBLAS";
      row.min_ratio = 0.9;
      const double flops = 2.0 * static_cast<double>(m) * shape.n * shape.k;
      char note[64];
      std::snprintf(note, sizeof(note), " %.0fTF", flops / (row.ours_us * 1e6));
      row.shape += note;
      ctx.report.Add(row);
      // mma.sync as well on sm_90, reported only: the portable path's standing.
      if (path == cuda::GemmPath::kWgmma && (m == 1 || m == 2048)) {
        Row mma = row;
        mma.op = std::string("gemm mma.sync bf16 ") + shape.model + " " + shape.layer;
        mma.shape = ShapeName(m, shape.n, shape.k);
        mma.max_rel_err = CheckOnce(ctx, p, cuda::GemmPath::kMmaSync);
        mma.ours_us = MedianMicros(
            [&] {
              cuda::GemmArgs args = base;
              args.w = next_w();
              cuda::Gemm(args, cuda::GemmPath::kMmaSync, ctx.stream);
            },
            ctx.stream);
        mma.min_ratio = 0;
        ctx.report.Add(mma);
      }
    }
  }
}

}  // namespace

void CheckGemm(Context& ctx) {
  CheckEdgeShapes(ctx);
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, ctx.stream));
  CheckModelShapes(ctx, handle);
  CUBLAS_CHECK(cublasDestroy(handle));
}

}  // namespace iquest::gpu_check
