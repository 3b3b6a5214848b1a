// Deterministic tiny checkpoints in HF layout (config.json + model.safetensors) with random
// weights from a fixed seed, in llama and qwen2 variants. Tests and the demo use them; nothing
// is downloaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace iquest {

struct TinyModelOptions {
  std::string arch = "llama";  // "llama" (LlamaForCausalLM) or "qwen2" (Qwen2ForCausalLM).
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
};

// Writes `dir`/config.json and `dir`/model.safetensors; creates `dir` if needed.
absl::Status WriteTinyModel(const std::string& dir, const TinyModelOptions& options);

}  // namespace iquest
