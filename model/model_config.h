// ModelConfig: the fields of an HF config.json that the Llama-family forward pass needs, parsed
// and validated once at load.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace iquest {

// All four are the same decoder (RMSNorm, GQA, rotate-half RoPE, SwiGLU); they differ in biases
// and defaults only. IQuestCoderForCausalLM (non-Loop) is plain Llama under another name.
enum class Architecture { kLlama, kMistral, kQwen2, kIQuestCoder };

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
  // The longest sequence (prompt + output) the model is run on: max_position_embeddings, capped
  // by Mistral's sliding_window (we run full attention, which equals sliding-window attention
  // only while the sequence fits inside the window).
  int64_t max_context_len = 0;
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

  // Parses config.json text; `source` names the file in error messages.
  static absl::StatusOr<ModelConfig> FromJson(std::string_view text, const std::string& source);
  // Reads `<model_dir>/config.json`.
  static absl::StatusOr<ModelConfig> Load(const std::string& model_dir);
};

// RoPE inverse frequencies [head_dim / 2] for `config`, with its rope_scaling applied, computed
// in double precision.
std::vector<double> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace iquest
