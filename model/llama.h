// LlamaModel: the Llama-family decoder (Llama, Mistral, Qwen2, IQuest-Coder, and
// IQuest-Coder-Loop, which runs the stack loop_num times; see RunLayer) written as a readable
// sequence of Backend calls over a paged KV cache.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/batch_inputs.h"
#include "model/checkpoint.h"
#include "model/decode_graphs.h"
#include "model/kv_cache.h"
#include "model/llama_weights.h"
#include "model/model_config.h"

namespace iquest {

class LlamaModel {
 public:
  // Reads an HF checkpoint folder (config.json + safetensors) or a GGUF file (or a folder
  // holding one; see model_files.h), binds the weights to the config and hands them to
  // `backend`, which must outlive the model.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& model_path,
                                                          Backend& backend);

  // A model of `config`'s shape whose weights are made on the backend by FillRandom (see
  // LlamaWeights::Random): benchmarks of 8B- and 40B-shaped models on a GPU machine.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> CreateRandom(const ModelConfig& config,
                                                                  DType dtype, uint64_t seed,
                                                                  Backend& backend);

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }

  // Runs one step over `inputs`, writing this step's K/V into `cache`, and returns the logits
  // of the rows in inputs.logits_indices: f32 [logits_indices.size(), vocab_size], in the
  // backend's memory, valid until the next step. A malformed batch (an index out of range) is
  // kInvalidArgument and touches nothing.
  absl::StatusOr<TensorView> ForwardToDevice(const BatchInputs& inputs, KvCache& cache);
  // ForwardToDevice, then every logits row copied to the host.
  absl::Status Forward(const BatchInputs& inputs, KvCache& cache, std::vector<float>& logits);

  // On backends that SupportsGraphs() (CUDA), a decode-only step runs as one captured graph
  // (model/decode_graphs.h). On by default.
  void set_decode_graphs(bool enabled) { decode_graphs_enabled_ = enabled; }
  // Graphs captured so far (for tests and logs).
  int64_t num_decode_graphs() const;

 private:
  LlamaModel(ModelConfig config, Backend& backend)
      : config_(std::move(config)), backend_(backend) {}

  // What every model needs once its weights are bound: Gemm weights announced to the backend,
  // the RoPE table, the workspace.
  absl::Status FinishLoading();
  // backend_.PrepareGemmWeight(w), then drops w's mapped pages if the backend copied it.
  void PrepareGemmWeight(TensorView w);

  // Device copies of a step's index arrays and the activations, grown on demand.
  struct Workspace;
  struct StepViews;
  absl::Status EnsureWorkspace(int64_t num_tokens, int64_t num_seqs, int64_t max_blocks,
                               int64_t num_logits);
  StepViews UploadStep(const BatchInputs& inputs);
  void RunLayer(int64_t layer, int64_t pass, const StepViews& step, KvCache& cache);
  // Every device op of a step after the uploads: embeddings, layers, final norm, row
  // selection, lm_head. Exactly what a graph captures.
  void RunDeviceSteps(const StepViews& step, KvCache& cache);
  absl::StatusOr<TensorView> ForwardDecodeGraph(const BatchInputs& inputs, KvCache& cache);

  ModelConfig config_;
  Backend& backend_;
  std::unique_ptr<Checkpoint> checkpoint_;  // Keeps the mmapped weights alive.
  std::unique_ptr<LlamaWeights> weights_;
  std::unique_ptr<DeviceBuffer> inv_freq_buffer_;
  TensorView inv_freq_;  // f32 [head_dim / 2]
  std::shared_ptr<Workspace> workspace_;
  bool decode_graphs_enabled_ = true;
  std::unique_ptr<DecodeGraphs> decode_graphs_;
};

}  // namespace iquest
