// CudaBackend: the Backend interface over the hand-written CUDA kernels (cuda_ops.h).
//
// - Memory: cudaMalloc'd buffers; weights are uploaded once (UploadWeight), GEMM weights as
//   16-bit (f32 checkpoints are rounded to bf16), 1-D weights (norms, biases) as f32.
// - Activations stay f32 on the device, as the Backend contract says; a 16-bit GEMM rounds its
//   A operand to the weight's type in a scratch buffer first (one small kernel).
// - One stream carries every op, in order; nothing waits for the device except CopyToHost,
//   Synchronize, and a PagedAttention call whose AttentionArgs lack the host-side bounds.
// - Scratch buffers (the 16-bit A, the split-K and attention workspaces) grow to the largest
//   step seen and are reused: no device or host allocation in a step of a size seen before.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

namespace iquest::cuda {

class CublasGemm;  // cuBLAS through dlopen (cublas_gemm.cc), for --gemm=cublas.

class CudaBackend final : public Backend {
 public:
  // kUnavailable when no CUDA device is usable (no driver, no device); kInvalidArgument for an
  // unknown --gemm or one this device cannot run (wgmma off sm_90a).
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const BackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return name_; }
  cudaStream_t stream() const { return stream_; }
  GemmPath gemm_path() const { return gemm_path_; }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) override;
  void CopyToDevice(const void* host, void* device, size_t num_bytes) override;
  void CopyToHost(const void* device, void* host, size_t num_bytes) override;
  absl::StatusOr<TensorView> UploadWeight(TensorView host) override;
  void FillRandom(TensorView t, uint64_t seed, float scale) override;

  void Embed(TensorView token_ids, TensorView table, TensorView out) override;
  void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) override;
  void RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
               TensorView out) override;
  void Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) override;
  void SiluMul(TensorView gate, TensorView up, TensorView out) override;
  void GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                         TensorView global, TensorView local, TensorView out) override;
  void WriteKv(TensorView k, TensorView v, TensorView slot_mapping, const PagedKvView& kv) override;
  void RopeWriteKv(TensorView q, TensorView k, TensorView v, TensorView positions,
                   TensorView inv_freq, TensorView slot_mapping, const PagedKvView& kv) override;
  void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) override;
  void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                      TensorView out) override;
  void Argmax(TensorView logits, TensorView out) override;
  DType preferred_kv_dtype() const override { return DType::kBF16; }
  // The 16-bit type of the uploaded matrices (bf16 before any upload), so that RmsNorm and
  // SiluMul round the GEMM inputs once and the tensor-core GEMMs read them as they are. f32
  // under --gemm=simt (it reads f32 anyway) and when matrices of both 16-bit types were
  // uploaded (each Gemm then rounds `a` to its weight's type, as for any f32 `a`).
  DType gemm_input_dtype() const override;
  void Synchronize() override;

  // CUDA graphs: stream capture of the ops in between, instantiated once, replayed with one
  // cudaGraphLaunch. Scratch cannot grow while capturing (that would free memory the graph
  // names): the caller runs the same step once uncaptured first, which sizes it.
  bool SupportsGraphs() const override { return true; }
  void BeginCapture() override;
  std::unique_ptr<StepGraph> EndCapture() override;
  uint64_t scratch_epoch() const override { return scratch_epoch_; }

  // Rows are gathered into one block (greedy rows first), greedy rows take Argmax, the others
  // cuda::SampleTokens (sampling_reference.h's rule), then TokenLogprobs; 8 bytes a row come
  // back. Synchronizes.
  void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                    std::span<SampledId> out) override;
  // One token per row of `logits` (f32 [rows, vocab], device), drawn as cuda::SampleTokens
  // defines; `params` and `out` are host arrays of `rows` entries. Synchronizes.
  void DrawRows(TensorView logits, const std::vector<SamplingRowParams>& params,
                std::vector<int32_t>& out);

 private:
  CudaBackend(int device, cudaStream_t stream, GemmPath gemm_path, std::string name);

  // Enqueues the draw of every row of `logits` (device) into device_out [rows]; no
  // synchronization. Uses the sampling_ scratch.
  void EnqueueDraw(TensorView logits, const std::vector<SamplingRowParams>& params,
                   int32_t* device_out);

  // Device scratch of at least `num_bytes`, grown geometrically; growing waits for queued work
  // that may still read the old buffer.
  struct Scratch {
    void* data = nullptr;
    size_t num_bytes = 0;
  };
  void* EnsureScratch(Scratch& scratch, size_t num_bytes);

  const int device_;
  cudaStream_t stream_;
  const GemmPath gemm_path_;
  const std::string name_;
  std::unique_ptr<CublasGemm> cublas_;
  std::vector<void*> weights_;  // Uploaded weights, freed with the backend.
  bool bf16_matrices_ = false;  // Some uploaded matrix is bf16 (f32 ones become bf16).
  bool f16_matrices_ = false;   // Some uploaded matrix is f16.
  Scratch a16_;                 // The GEMM's A operand rounded to 16 bits.
  Scratch gemm_workspace_;      // Split-K partial sums.
  Scratch attention_workspace_;
  Scratch sampling_;            // Params in and the sampling kernel's workspace.
  Scratch sampled_rows_;        // SampleTokens: row indices, gathered rows, tokens, logprobs.
  uint64_t scratch_epoch_ = 0;  // Bumped whenever a scratch buffer moves.
  bool capturing_ = false;
};

}  // namespace iquest::cuda
