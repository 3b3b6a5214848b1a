// CudaBackend's sampling: argmax and SampleTokens (greedy rows by argmax, the rest drawn by the
// id-order rule of sampling_reference.h; the sampled token's logprob computed on the device), so
// only ids and logprobs come back to the host.
#include <algorithm>
#include <vector>

#include "common/check.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

namespace iquest::cuda {
namespace {

int32_t* I32(TensorView t) { return t.as<int32_t>(); }
float* F32(TensorView t) { return t.as<float>(); }

}  // namespace

void CudaBackend::Argmax(TensorView logits, TensorView out) {
  CHECK(out.ShapeIs({logits.dim(0)})) << out.ShapeString();
  cuda::Argmax(F32(logits), logits.dim(0), logits.dim(1), I32(out), stream_);
}

void CudaBackend::SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                               std::span<SampledId> out) {
  CHECK_EQ(rows.size(), out.size());
  const int64_t num_rows = static_cast<int64_t>(rows.size()), vocab = logits.dim(1);
  if (num_rows == 0) return;
  // Greedy rows first, then drawn ones; order[j] is the rows[] entry of gathered row j.
  std::vector<size_t> order;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].temperature <= 0.0f) order.push_back(i);
  }
  const int64_t num_greedy = static_cast<int64_t>(order.size());
  std::vector<SamplingRowParams> params;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].temperature <= 0.0f) continue;
    order.push_back(i);
    // The kernel takes a float draw in [0, 1): rounding must not reach 1.
    const float uniform = std::min(static_cast<float>(rows[i].uniform), 0x1.fffffep-1f);
    params.push_back({rows[i].temperature, rows[i].top_k, rows[i].top_p, rows[i].min_p, uniform});
  }
  std::vector<int32_t> indices(order.size());
  for (size_t j = 0; j < order.size(); ++j) {
    CHECK(rows[order[j]].logits_row >= 0 && rows[order[j]].logits_row < logits.dim(0));
    indices[j] = static_cast<int32_t>(rows[order[j]].logits_row);
  }
  // One scratch: [indices | gathered rows | tokens | logprobs], each 256-byte aligned.
  auto align = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t index_bytes = align(indices.size() * sizeof(int32_t));
  const size_t rows_bytes = align(static_cast<size_t>(num_rows * vocab) * sizeof(float));
  const size_t token_bytes = align(static_cast<size_t>(num_rows) * sizeof(int32_t));
  uint8_t* base = static_cast<uint8_t*>(EnsureScratch(
      sampled_rows_, index_bytes + rows_bytes + token_bytes + num_rows * sizeof(float)));
  auto* device_indices = reinterpret_cast<int32_t*>(base);
  auto* gathered = reinterpret_cast<float*>(base + index_bytes);
  auto* device_tokens = reinterpret_cast<int32_t*>(base + index_bytes + rows_bytes);
  auto* device_logprobs = reinterpret_cast<float*>(base + index_bytes + rows_bytes + token_bytes);
  CopyToDevice(indices.data(), device_indices, indices.size() * sizeof(int32_t));
  const TensorView gathered_view(gathered, DType::kF32, {num_rows, vocab});
  Embed(TensorView(device_indices, DType::kI32, {num_rows}), logits, gathered_view);
  cuda::Argmax(gathered, num_greedy, vocab, device_tokens, stream_);
  EnqueueDraw(gathered_view.Rows(num_greedy, num_rows - num_greedy), params,
              device_tokens + num_greedy);
  cuda::TokenLogprobs(gathered, num_rows, vocab, device_tokens, device_logprobs, stream_);
  std::vector<int32_t> tokens(static_cast<size_t>(num_rows));
  std::vector<float> logprobs(static_cast<size_t>(num_rows));
  CopyToHost(device_tokens, tokens.data(), tokens.size() * sizeof(int32_t));
  CopyToHost(device_logprobs, logprobs.data(), logprobs.size() * sizeof(float));
  Synchronize();
  for (size_t j = 0; j < order.size(); ++j) out[order[j]] = {tokens[j], logprobs[j]};
}

void CudaBackend::EnqueueDraw(TensorView logits, const std::vector<SamplingRowParams>& params,
                              int32_t* device_out) {
  const int64_t rows = logits.dim(0), vocab = logits.dim(1);
  CHECK_EQ(static_cast<int64_t>(params.size()), rows);
  if (rows == 0) return;
  // One scratch: [params | kernel workspace], 256-byte aligned.
  const size_t params_bytes = (params.size() * sizeof(SamplingRowParams) + 255) / 256 * 256;
  uint8_t* base = static_cast<uint8_t*>(
      EnsureScratch(sampling_, params_bytes + SamplingWorkspaceBytes(rows, vocab)));
  auto* device_params = reinterpret_cast<SamplingRowParams*>(base);
  CopyToDevice(params.data(), device_params, params.size() * sizeof(SamplingRowParams));
  cuda::SampleTokens(F32(logits), device_params, rows, vocab, device_out, base + params_bytes,
                     stream_);
}

void CudaBackend::DrawRows(TensorView logits, const std::vector<SamplingRowParams>& params,
                           std::vector<int32_t>& out) {
  out.assign(static_cast<size_t>(logits.dim(0)), -1);
  if (out.empty()) return;
  auto* device_tokens =
      static_cast<int32_t*>(EnsureScratch(sampled_rows_, out.size() * sizeof(int32_t)));
  EnqueueDraw(logits, params, device_tokens);
  CopyToHost(device_tokens, out.data(), out.size() * sizeof(int32_t));
}

}  // namespace iquest::cuda
