// CpuBackend: the reference backend. Host memory, single-threaded reference ops.
#pragma once

#include "kernels/backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sampling.h"

namespace iquest {

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) override;
  void CopyToDevice(const void* host, void* device, size_t num_bytes) override;
  void CopyToHost(const void* device, void* host, size_t num_bytes) override;
  absl::StatusOr<TensorView> UploadWeight(TensorView host) override { return host; }
  bool ReadsQuantizedWeights() const override { return true; }

  void Embed(TensorView token_ids, TensorView table, TensorView out) override;
  void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) override;
  void RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
               TensorView out) override;
  void Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) override;
  void SiluMul(TensorView gate, TensorView up, TensorView out) override;
  void WriteKv(TensorView k, TensorView v, TensorView slot_mapping, const PagedKvView& kv) override;
  void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) override;
  void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                      TensorView out) override;
  void GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                         TensorView global, TensorView local, TensorView out) override {
    cpu::GatedAttentionMix(q, gate_weight, gate_bias, global, local, out);
  }
  void Argmax(TensorView logits, TensorView out) override;
  void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                    std::span<SampledId> out) override {
    cpu::SampleRows(logits, rows, out, drawer_);
  }

 private:
  cpu::TokenDrawer drawer_;
};

}  // namespace iquest
