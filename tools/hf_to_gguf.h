// Converts an HF checkpoint folder (config.json + safetensors + SentencePiece tokenizer.model)
// into one GGUF file that llama.cpp loads, so that llama.cpp can run exactly our weights.
//
// What is written, as llama.cpp's convert_hf_to_gguf.py does:
//  - general.* and {arch}.* hyperparameters (arch "llama" for Llama/Mistral/IQuestCoder,
//    "qwen2" for Qwen2);
//  - the tokenizer as tokenizer.ggml.model = "llama" (tokens, scores, token types, special
//    ids), padded with "<unused_N>" placeholders up to the model's vocab_size when the
//    tokenizer is smaller (llama.cpp requires one token per embedding row);
//  - tensors under GGUF names; 1-D tensors (norms, biases) as F32; q_proj/k_proj rows permuted
//    for llama (see model/gguf_model.h).
// Tensors are converted one at a time, so memory stays near the size of the largest tensor.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace iquest {

struct HfToGgufOptions {
  std::string model_dir;
  std::string out_path;
  std::string dtype = "keep";  // Of 2-D tensors: "keep", "f32", "f16" or "bf16".
  // Empty, or a quantized type for the 2-D tensors (tools/gguf_quant_plan.h: q8_0, q4_k_m, ...);
  // those it leaves unquantized take `dtype`.
  std::string quant;
  std::string name;  // general.name; empty: the folder's name.
};

absl::Status ConvertHfToGguf(const HfToGgufOptions& options);

}  // namespace iquest
