// The Llama-family model as llama.cpp lays it out in GGUF: the metadata keys that make a
// ModelConfig, the tensor names (token_embd, blk.N.attn_q, ...), and the Q/K row permutation.
//
// llama.cpp's convert_hf_to_gguf.py permutes the rows of q_proj and k_proj (weights and biases)
// of llama-architecture models so that its RoPE can rotate adjacent pairs (2i, 2i+1):
//   w.reshape(n_head, 2, rows / n_head / 2, *rest).swapaxes(1, 2).reshape(w.shape)
// (n_head is the KV head count for k_proj). HF checkpoints and our forward pass rotate halves
// (i, i + head_dim / 2), so a GGUF llama model is un-permuted once at load. Qwen2 GGUFs are not
// permuted (llama.cpp runs them with NEOX, i.e. rotate-half, RoPE).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "model/model_config.h"

namespace iquest {

// llama3 RoPE scaling, as llama.cpp stores it: f32 [head_dim / 2] divisors of the inverse
// frequencies (read into ModelConfig::rope_freq_factors).
inline constexpr char kGgufRopeFreqsTensor[] = "rope_freqs.weight";

// general.architecture of a ModelConfig: "llama" (Llama, Mistral, IQuestCoder) or "qwen2".
std::string GgufArchitecture(const ModelConfig& config);

// Reads general.architecture and the {arch}.* hyperparameters, then validates them as
// config.json would be. The vocabulary size is token_embd's row count; tie_word_embeddings
// is the absence of output.weight; biases are detected from blk.0's tensors.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& file);

// The rope_freqs divisors that reproduce `config`'s RoPE scaling on top of plain RoPE.
std::vector<float> RopeFreqFactorsOf(const ModelConfig& config);

// "blk.3.attn_q.weight" <-> "model.layers.3.self_attn.q_proj.weight", and so on for every
// tensor of the Llama family. nullopt for names outside it.
std::optional<std::string> HfNameOfGgufTensor(std::string_view gguf_name);
std::optional<std::string> GgufNameOfHfTensor(std::string_view hf_name);

// Whether `hf_name` is a q_proj/k_proj tensor that llama.cpp permutes for `config`, and with
// how many heads (0: not permuted).
int64_t QkPermutationHeads(const ModelConfig& config, std::string_view hf_name);

// Row permutations of a [rows, row_bytes] matrix (or a [rows] bias with row_bytes = element
// size) split into `num_heads` heads. `to_gguf` applies llama.cpp's permutation; otherwise its
// inverse. `src` and `dst` must not overlap.
void PermuteQkRows(std::span<const uint8_t> src, std::span<uint8_t> dst, int64_t rows,
                   int64_t num_heads, bool to_gguf);

}  // namespace iquest
