// The device sampler (kernels/cuda/sampling.cu) against the double-precision definition
// cpu::SampleTokenTraced, row by row, and its time against one read of the logits.
//
// Parity: random logits (with ties, -inf and NaN rows) and per-row parameters cycling through
// every filter alone and combined. A row whose device token differs from the reference's is a
// mismatch, unless the reference's trace puts the row within kBoundaryMargin of flipping (a draw
// landing on a bucket edge, or a mass or probability on top_p or min_p; sampling.cu's contract
// bounds the device's relative error by ~6e-6): those are counted and reported, not failed.
// Every output is poisoned before the run, and a second run must give the same tokens.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/sampling_reference.h"
#include "kernels/cuda/cuda_ops.h"
#include "tools/gpu_check/harness.h"

namespace iquest::gpu_check {
namespace {

constexpr double kBoundaryMargin = 1e-5;

// The device's parameter struct mirrors the reference's field for field.
static_assert(sizeof(cpu::SamplingRow) == sizeof(cuda::SamplingRowParams));
static_assert(offsetof(cpu::SamplingRow, top_k) == offsetof(cuda::SamplingRowParams, top_k));
static_assert(offsetof(cpu::SamplingRow, uniform) == offsetof(cuda::SamplingRowParams, uniform));

cpu::SamplingRow ToReference(const cuda::SamplingRowParams& p) {
  return cpu::SamplingRow{.temperature = p.temperature,
                          .top_k = p.top_k,
                          .top_p = p.top_p,
                          .min_p = p.min_p,
                          .uniform = p.uniform};
}

// Row r exercises filter mix r % 8; temperatures and thresholds vary with the generator.
std::vector<cuda::SamplingRowParams> RandomParams(int64_t rows, int64_t vocab,
                                                  std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float temperatures[] = {0.25f, 0.7f, 1.0f, 1.6f};
  std::vector<cuda::SamplingRowParams> params(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    cuda::SamplingRowParams& p = params[static_cast<size_t>(r)];
    p.temperature = temperatures[rng() % 4];
    const auto random_k = [&] { return static_cast<int32_t>(1 + rng() % 2000); };
    switch (r % 8) {
      case 0:  // No filter.
        break;
      case 1:  // top_k alone.
        p.top_k = random_k();
        break;
      case 2:  // top_p alone.
        p.top_p = 0.05f + 0.9f * unit(rng);
        break;
      case 3:  // min_p alone.
        p.min_p = 0.3f * unit(rng);
        break;
      case 4:
        p.top_k = random_k();
        p.top_p = 0.05f + 0.9f * unit(rng);
        break;
      case 5:
        p.top_k = random_k();
        p.top_p = 0.3f + 0.69f * unit(rng);
        p.min_p = 0.1f * unit(rng);
        break;
      case 6:  // Argmax (or a uniform draw among tied maxima).
        p.top_k = 1;
        break;
      case 7:  // top_k at or beyond the vocabulary, top_p near 1, a small min_p.
        p.top_k = static_cast<int32_t>(vocab / 2 + rng() % static_cast<uint64_t>(vocab));
        p.top_p = 0.995f;
        p.min_p = 0.01f * unit(rng);
        break;
    }
    float u = unit(rng);
    if (u >= 1.0f) u = 0.0f;
    p.uniform = r % 16 == 3 ? 0.0f : (r % 16 == 11 ? std::nextafter(1.0f, 0.0f) : u);
  }
  return params;
}

// Logits in [-scale, scale) with row-dependent extras: rows % 5 == 1 quantized to steps of 0.25
// (many ties, also at thresholds), rows % 7 == 2 with ~1% -inf, rows % 11 == 4 with a few NaN.
std::vector<float> RandomLogits(int64_t rows, int64_t vocab, std::mt19937_64& rng) {
  std::vector<float> logits = RandomFloats(static_cast<size_t>(rows * vocab), rng, 6.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits.data() + r * vocab;
    if (r % 5 == 1) {
      for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] * 4.0f) / 4.0f;
    }
    if (r % 7 == 2) {
      for (int64_t i = 0; i < vocab; ++i) {
        if (rng() % 100 == 0) row[i] = -std::numeric_limits<float>::infinity();
      }
    }
    if (r % 11 == 4) {
      for (int j = 0; j < 8; ++j) row[rng() % vocab] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  return logits;
}

struct ParityCount {
  int64_t rows = 0;
  int64_t mismatches = 0;       // Different tokens away from any boundary: a bug.
  int64_t boundary = 0;         // Rows within kBoundaryMargin of flipping.
  int64_t boundary_differ = 0;  // ... of which the device chose the other side.
  int64_t nondeterministic = 0;
  std::string first_failures;
};

void CheckShape(Context& ctx, int64_t rows, int64_t vocab, ParityCount& count) {
  const std::vector<float> logits = RandomLogits(rows, vocab, ctx.rng);
  const std::vector<cuda::SamplingRowParams> params = RandomParams(rows, vocab, ctx.rng);
  DeviceArray d_logits(logits.size() * sizeof(float));
  DeviceArray d_params(params.size() * sizeof(cuda::SamplingRowParams));
  DeviceArray d_out(static_cast<size_t>(rows) * sizeof(int32_t));
  DeviceArray d_workspace(std::max<size_t>(cuda::SamplingWorkspaceBytes(rows, vocab), 1));
  d_logits.Upload(logits.data());
  d_params.Upload(params.data());

  std::vector<int32_t> tokens[2];
  for (std::vector<int32_t>& t : tokens) {
    d_out.Poison();
    cuda::SampleTokens(d_logits.as<float>(), d_params.as<cuda::SamplingRowParams>(), rows, vocab,
                       d_out.as<int32_t>(), d_workspace.data(), ctx.stream);
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    t.resize(static_cast<size_t>(rows));
    d_out.Download(t.data());
  }

  // The reference on every host core (each row sorts up to a vocabulary).
  std::vector<cpu::SampleTrace> traces(static_cast<size_t>(rows));
  const int64_t workers =
      std::min<int64_t>(rows, std::max<unsigned>(1, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int64_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int64_t r = w; r < rows; r += workers) {
        traces[static_cast<size_t>(r)] = cpu::SampleTokenTraced(
            std::span<const float>(logits.data() + r * vocab, static_cast<size_t>(vocab)),
            ToReference(params[static_cast<size_t>(r)]));
      }
    });
  }
  for (std::thread& t : pool) t.join();

  for (int64_t r = 0; r < rows; ++r) {
    const size_t i = static_cast<size_t>(r);
    const cpu::SampleTrace& trace = traces[i];
    const int32_t ours = tokens[0][i];
    ++count.rows;
    if (tokens[1][i] != ours) ++count.nondeterministic;
    const bool near = trace.MinMargin() < kBoundaryMargin;
    count.boundary += near;
    if (ours == trace.token) continue;
    if (near && ours >= 0 && ours < vocab) {
      ++count.boundary_differ;
      continue;
    }
    ++count.mismatches;
    if (count.mismatches <= 4) {
      const cuda::SamplingRowParams& p = params[i];
      std::ostringstream line;
      line << " [V=" << vocab << " row " << r << ": ours " << ours << " ref " << trace.token
           << " T=" << p.temperature << " k=" << p.top_k << " p=" << p.top_p << " min_p=" << p.min_p
           << " u=" << p.uniform << " kept=" << trace.num_kept << " margin=" << trace.MinMargin()
           << "]";
      count.first_failures += line.str();
    }
  }
}

void TimeShape(Context& ctx, const std::string& name, int64_t rows, int64_t vocab,
               const cuda::SamplingRowParams& shared) {
  const std::vector<float> logits = RandomFloats(static_cast<size_t>(rows * vocab), ctx.rng, 6.0f);
  std::vector<cuda::SamplingRowParams> params(static_cast<size_t>(rows), shared);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (cuda::SamplingRowParams& p : params) p.uniform = unit(ctx.rng) * 0.999f;
  DeviceArray d_logits(logits.size() * sizeof(float));
  DeviceArray d_params(params.size() * sizeof(cuda::SamplingRowParams));
  DeviceArray d_out(static_cast<size_t>(rows) * sizeof(int32_t));
  DeviceArray d_workspace(std::max<size_t>(cuda::SamplingWorkspaceBytes(rows, vocab), 1));
  d_logits.Upload(logits.data());
  d_params.Upload(params.data());
  Row row;
  row.op = name;
  row.shape = "rows=" + std::to_string(rows) + " V=" + std::to_string(vocab);
  row.ours_us = MedianMicros(
      [&] {
        cuda::SampleTokens(d_logits.as<float>(), d_params.as<cuda::SamplingRowParams>(), rows,
                           vocab, d_out.as<int32_t>(), d_workspace.data(), ctx.stream);
      },
      ctx.stream);
  row.ref_name = "logits read once";
  row.ref_us = BandwidthBoundMicros(static_cast<double>(logits.size() * sizeof(float)));
  row.max_rel_err = 0.0;  // Parity is the separate check row.
  row.err_limit = 0.0;
  row.min_ratio = 0.0;  // Reported only.
  ctx.report.Add(row);
}

}  // namespace

void CheckSampling(Context& ctx) {
  const std::vector<int64_t> vocabs =
      ctx.quick ? std::vector<int64_t>{32000, 128256} : std::vector<int64_t>{32000, 128256, 151936};
  const std::vector<int64_t> row_counts =
      ctx.quick ? std::vector<int64_t>{1, 64} : std::vector<int64_t>{1, 64, 256};
  ParityCount count;
  for (int64_t vocab : vocabs) {
    for (int64_t rows : row_counts) CheckShape(ctx, rows, vocab, count);
  }
  std::ostringstream note;
  note << count.rows << " rows: " << count.mismatches << " mismatches, " << count.nondeterministic
       << " nondeterministic; " << count.boundary << " within " << kBoundaryMargin
       << " of a boundary (" << count.boundary_differ
       << " of them drawn on the other side, allowed)" << count.first_failures;
  ctx.report.AddCheck("sample parity vs double reference", "V=32000..151936 rows=1..256",
                      count.mismatches == 0 && count.nondeterministic == 0, note.str());

  TimeShape(ctx, "sample (no filter)", 256, 128256, cuda::SamplingRowParams{});
  TimeShape(ctx, "sample top_k=50", 256, 128256, cuda::SamplingRowParams{.top_k = 50});
  TimeShape(ctx, "sample top_p=0.9", 256, 128256, cuda::SamplingRowParams{.top_p = 0.9f});
  TimeShape(ctx, "sample k=50 p=0.9 min_p=0.05", 256, 128256,
            cuda::SamplingRowParams{.top_k = 50, .top_p = 0.9f, .min_p = 0.05f});
}

}  // namespace iquest::gpu_check
