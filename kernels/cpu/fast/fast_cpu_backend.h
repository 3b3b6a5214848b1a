// FastCpuBackend: the production CPU backend. Same ops and results as CpuBackend (the reference,
// kernels/cpu/*.cc) within the tolerances in docs/performance.md, but vectorized (AVX2 or
// AVX-512, chosen at run time), multi-threaded over one pool, and with GEMM weights repacked
// once into panels (packed_gemm.h). Quantized weights (GGUF blocks) are not copied: Gemm reads
// their blocks in place (quant_gemm.h).
//
// Precision: f32 arithmetic throughout, except that on CPUs with AVX512_BF16 a bf16-weight GEMM
// of at least kBf16DotMinRows rows (prefill, big batches) rounds its activations to bf16 and
// uses VDPBF16PS, as llama.cpp and oneDNN do; decode-sized GEMMs stay exact f32.
//
// gemm_input_dtype() stays f32 (the default): the panels kernels read f32 activations. A
// 16-bit Gemm `a` or SiluMul `out` (which the model never passes here) runs the reference op,
// correct but single-threaded; RmsNorm takes any `out` dtype at full speed (it runs the
// reference per row slice anyway).
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fast/cpu_isa.h"
#include "kernels/cpu/fast/packed_gemm.h"
#include "kernels/cpu/fast/thread_pool.h"
#include "kernels/cpu/fast/vector_ops.h"

namespace iquest::cpu {

inline constexpr int64_t kBf16DotMinRows = 16;

class FastCpuBackend final : public Backend {
 public:
  // `num_threads` >= 1; `isa` must be supported by this CPU (ResolveCpuIsa).
  FastCpuBackend(CpuIsa isa, int num_threads);

  std::string_view name() const override { return name_; }
  CpuIsa isa() const { return isa_; }
  int num_threads() const { return pool_.num_threads(); }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) override {
    return reference_.Allocate(num_bytes);
  }
  void CopyToDevice(const void* host, void* device, size_t num_bytes) override {
    reference_.CopyToDevice(host, device, num_bytes);
  }
  void CopyToHost(const void* device, void* host, size_t num_bytes) override {
    reference_.CopyToHost(device, host, num_bytes);
  }
  absl::StatusOr<TensorView> UploadWeight(TensorView host) override { return host; }
  void PrepareGemmWeight(TensorView w) override;
  bool HoldsCopyOf(TensorView w) const override { return FindPacked(w) != nullptr; }
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
                         TensorView global, TensorView local, TensorView out) override;
  void Argmax(TensorView logits, TensorView out) override;
  // Rows split over the pool; each thread draws with its own scratch.
  void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                    std::span<SampledId> out) override;

 private:
  // A packed weight and what identifies its source: address, shape, dtype and the first and
  // last bytes (so that a freed weight whose address is reused is not mistaken for it).
  struct PackedEntry {
    TensorView source;
    std::vector<uint8_t> head, tail;
    std::unique_ptr<PackedWeight> packed;
  };
  const PackedWeight* FindPacked(TensorView w) const;
  // out = a w^T for a quantized w, read in place (quant_gemm.h).
  void QuantGemm(TensorView a, TensorView w, TensorView out);
  // out[m, :] += bias (nothing when bias is empty).
  void AddBias(TensorView bias, TensorView out);

  const CpuIsa isa_;
  const std::string name_;
  CpuBackend reference_;
  ThreadPool pool_;
  std::unordered_map<const void*, PackedEntry> packed_;
  // Grow-only scratch, reused every step.
  std::vector<uint32_t> a_pairs_;  // The dot kernel's packed activations.
  std::vector<AttentionTask> attention_tasks_;
};

}  // namespace iquest::cpu
