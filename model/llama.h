// LlamaModel: the Llama-family decoder (Llama, Mistral, Qwen2, IQuest-Coder) written as a
// readable sequence of Backend calls over a paged KV cache.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/batch_inputs.h"
#include "model/checkpoint.h"
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

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }

  // Runs one step over `inputs`, writing this step's K/V into `cache`, and returns the logits
  // of the rows in inputs.logits_indices: f32 [logits_indices.size(), vocab_size], on the host.
  // A malformed batch (an index out of range) is kInvalidArgument and touches nothing.
  absl::Status Forward(const BatchInputs& inputs, KvCache& cache, std::vector<float>& logits);

 private:
  LlamaModel(ModelConfig config, Backend& backend)
      : config_(std::move(config)), backend_(backend) {}

  // Device copies of a step's index arrays and the activations, grown on demand.
  struct Workspace;
  struct StepViews;
  absl::Status EnsureWorkspace(int64_t num_tokens, int64_t num_seqs, int64_t max_blocks,
                               int64_t num_logits);
  StepViews UploadStep(const BatchInputs& inputs);
  void RunLayer(int64_t layer, const StepViews& step, KvCache& cache);

  ModelConfig config_;
  Backend& backend_;
  std::unique_ptr<Checkpoint> checkpoint_;  // Keeps the mmapped weights alive.
  std::unique_ptr<LlamaWeights> weights_;
  std::unique_ptr<DeviceBuffer> inv_freq_buffer_;
  TensorView inv_freq_;  // f32 [head_dim / 2]
  std::shared_ptr<Workspace> workspace_;
};

}  // namespace iquest
