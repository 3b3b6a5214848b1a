// ModelConfig: the fields of an HF config.json that the Llama-family forward pass needs, parsed
// and validated once at load.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace iquest {

// All are the same decoder (RMSNorm, GQA, rotate-half RoPE, SwiGLU); the first four differ in
// biases and defaults only. IQuestCoderForCausalLM (non-Loop) is plain Llama under another name.
// IQuestLoopCoderForCausalLM runs the Llama stack loop_num times (model/llama.h, the Loop step).
enum class Architecture { kLlama, kMistral, kQwen2, kIQuestCoder, kIQuestLoopCoder };

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only (HF _compute_llama3_parameters).
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // As written in config.json, e.g. "Qwen2ForCausalLM".
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // May differ from hidden_size / num_heads.
  int64_t vocab_size = 0;
  // The longest sequence (prompt + output) the model is run on: max_position_embeddings.
  int64_t max_context_len = 0;
  // Per-layer sliding window in tokens ([num_layers], 0 = full causal attention); empty when no
  // layer has one. Mistral: `sliding_window` on every layer. Qwen2 with use_sliding_window:
  // the layers `layer_types` names "sliding_attention", or else those >= max_window_layers.
  std::vector<int64_t> layer_windows;
  // IQuestLoopCoder: passes over the layer stack (1 for every other architecture), and the
  // sliding window of the local branch of passes 2.. (`loop_window_size`).
  int64_t loop_num = 1;
  int64_t loop_window = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-frequency divisors [head_dim / 2], as GGUF stores llama3 scaling (tensor rope_freqs);
  // applied on top of rope_scaling. Empty: none.
  std::vector<float> rope_freq_factors;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;      // Qwen2 always; Llama/Mistral when attention_bias.
  bool o_bias = false;        // Llama/Mistral attention_bias.
  bool mlp_bias = false;      // Llama mlp_bias.
  int32_t bos_token_id = -1;  // -1: none.
  std::vector<int32_t> eos_token_ids;
  DType torch_dtype = DType::kBF16;

  // The sliding window of `layer` (0: none).
  int64_t LayerWindow(int64_t layer) const {
    return layer_windows.empty() ? 0 : layer_windows[static_cast<size_t>(layer)];
  }
  bool is_loop() const { return architecture == Architecture::kIQuestLoopCoder; }
  // KV-cache layers: pass 1's global K/V of every layer, then the local K/V of each later pass
  // (pass p >= 1, layer i: KV layer p * num_layers + i).
  int64_t num_kv_layers() const { return num_layers * loop_num; }

  // Parses config.json text; `source` names the file in error messages.
  static absl::StatusOr<ModelConfig> FromJson(std::string_view text, const std::string& source);
  // Reads `<model_dir>/config.json`.
  static absl::StatusOr<ModelConfig> Load(const std::string& model_dir);
};

// RoPE inverse frequencies [head_dim / 2] for `config`, with its rope_scaling applied, computed
// in double precision.
std::vector<double> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace iquest
