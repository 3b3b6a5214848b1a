// LlamaWeights: the named tensors of a Llama-family checkpoint, bound to a ModelConfig and made
// usable by a backend. A missing, mis-shaped or mis-typed tensor is an error that names the
// file and the tensor. The projection matrices, the embedding table and lm_head may be in a
// quantized dtype (GGUF's blocks), which the backends' Gemm and Embed read as they are.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "model/model_config.h"

namespace iquest {

struct LayerWeights {
  TensorView input_norm;                      // [hidden]
  TensorView q_proj;                          // [num_heads * head_dim, hidden]
  TensorView k_proj;                          // [num_kv_heads * head_dim, hidden]
  TensorView v_proj;                          // [num_kv_heads * head_dim, hidden]
  TensorView o_proj;                          // [hidden, num_heads * head_dim]
  TensorView q_bias, k_bias, v_bias, o_bias;  // [out] or empty
  TensorView post_norm;                       // [hidden]
  TensorView gate_proj;                       // [intermediate, hidden]
  TensorView up_proj;                         // [intermediate, hidden]
  TensorView down_proj;                       // [hidden, intermediate]
  TensorView gate_bias, up_bias, down_bias;   // [out] or empty
  // Loop models (model.gate_projections.{i}): the per-head gate of passes 2.. .
  TensorView loop_gate_weight;  // [num_heads, head_dim] or empty
  TensorView loop_gate_bias;    // [num_heads] or empty
};

struct LlamaWeights {
  TensorView embed_tokens;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView final_norm;  // [hidden]
  TensorView lm_head;     // [vocab, hidden]; the embedding table when tied.

  // Backend memory the weights own: copies of tensors whose file data was not aligned to their
  // element size, and every tensor of a Random model.
  std::vector<std::unique_ptr<DeviceBuffer>> aligned_copies;
  // Host f32 copies of quantized tensors in places that take only float weights (uploaded from
  // here; on the CPU they are the weights).
  std::deque<std::vector<uint8_t>> dequantized;

  static absl::StatusOr<std::unique_ptr<LlamaWeights>> Bind(const Checkpoint& checkpoint,
                                                            const ModelConfig& config,
                                                            Backend& backend);

  // Every tensor of `config` allocated on `backend` and filled there by Backend::FillRandom
  // (matrices and the embeddings in `dtype`, uniform in +-0.02; norms and biases f32), for
  // benchmarks of shapes too big to carry as files. Deterministic in `seed` and the same on every
  // backend.
  static absl::StatusOr<std::unique_ptr<LlamaWeights>> Random(const ModelConfig& config,
                                                              DType dtype, uint64_t seed,
                                                              Backend& backend);
};

}  // namespace iquest
