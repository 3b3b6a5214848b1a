// Which quantized type each tensor of a GGUF file gets, for iquest-quantize and
// iquest-convert-hf-to-gguf --quant: one type everywhere ("q8_0", "q4_0", "q4_k", "q5_k",
// "q6_k") or llama.cpp's mixes ("q4_k_m", "q5_k_m"), with llama.cpp's rules
// (llama_tensor_get_type) for the tensors that take more bits:
//  - the output projection (lm_head, or the tied embedding) is Q6_K, except in q8_0 files;
//  - in the _m mixes, v_proj and down_proj are Q6_K in the layers where use_more_bits(i, n):
//    the first and last eighth of the layers and every third layer between.
// 1-D tensors (norms, biases) are never quantized; a 2-D tensor whose rows are not whole blocks
// falls back to Q8_0 (rows a multiple of 32) or to the float dtype.
// "q4_k" and "q5_k" are pure (every matrix but the output in that type); their file_type says
// Q4_K_S / Q5_K_S, whose llama.cpp mixes give a few early layers one step more.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest {

struct GgufQuantPlan {
  QuantType base = QuantType::kQ8_0;
  bool more_bits_mix = false;  // q4_k_m, q5_k_m.
  uint32_t file_type = 0;      // general.file_type: llama.cpp's LLAMA_FTYPE_MOSTLY_*.

  // The type of HF tensor `hf_name` with `shape`, or nullopt to keep it a float tensor.
  std::optional<QuantType> TypeOf(const std::string& hf_name, const std::vector<int64_t>& shape,
                                  int64_t num_layers, bool tied_embeddings) const;
};

// "q8_0", "q4_0", "q4_k", "q5_k", "q6_k", "q4_k_m" or "q5_k_m"; InvalidArgument otherwise.
absl::StatusOr<GgufQuantPlan> ParseGgufQuantPlan(const std::string& name);

}  // namespace iquest
