// Deterministic tiny checkpoints in HF layout (config.json + model.safetensors) with random
// weights from a fixed seed, in llama, mistral, qwen2 and loop (IQuestLoopCoderForCausalLM)
// variants. Tests and the demo use them; nothing
// is downloaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace iquest {

struct TinyModelOptions {
  // "llama" (LlamaForCausalLM), "mistral" (MistralForCausalLM), "qwen2" (Qwen2ForCausalLM) or
  // "loop" (IQuestLoopCoderForCausalLM, laid out as the published 40B-Loop checkpoint).
  std::string arch = "llama";
  int64_t hidden_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 0;  // 0: hidden_size / num_heads.
  int64_t intermediate_size = 128;
  int64_t vocab_size = 256;
  int64_t max_position_embeddings = 512;
  uint64_t seed = 42;
  std::string dtype = "f32";  // "f32", "f16" or "bf16".
  bool tie_word_embeddings = false;
  std::string rope_scaling = "none";  // "none", "linear" or "llama3".
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  // Sliding window in tokens, 0 = none. mistral: every layer ("sliding_window": null when 0).
  // qwen2: use_sliding_window with max_window_layers 1 (layer 0 full, the others windowed).
  int64_t sliding_window = 0;
  // loop: config.json's loop_num and loop_window_size, and the gates' distribution: biases
  // uniform around gate_bias, weights with standard deviation gate_scale / sqrt(head_dim) (the
  // real checkpoint's biases sit near +2, where the local branch carries ~12 %; 0 makes both
  // branches matter).
  int64_t loop_num = 2;
  int64_t loop_window = 64;
  double gate_bias = 0.0;
  double gate_scale = 1.0;
};

// Writes `dir`/config.json and `dir`/model.safetensors; creates `dir` if needed.
absl::Status WriteTinyModel(const std::string& dir, const TinyModelOptions& options);

}  // namespace iquest
