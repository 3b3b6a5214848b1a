#include "tools/gguf_quant_plan.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace iquest {
namespace {

// llama.cpp's LLAMA_FTYPE_MOSTLY_* values.
constexpr uint32_t kFileTypeQ4_0 = 2, kFileTypeQ8_0 = 7, kFileTypeQ4_K_S = 14, kFileTypeQ4_K_M = 15,
                   kFileTypeQ5_K_S = 16, kFileTypeQ5_K_M = 17, kFileTypeQ6_K = 18;

bool UseMoreBits(int64_t layer, int64_t num_layers) {
  return layer < num_layers / 8 || layer >= 7 * num_layers / 8 || (layer - num_layers / 8) % 3 == 2;
}

// The layer of "model.layers.<i>.<rest>" and whether rest ends with `suffix`.
bool IsLayerTensor(const std::string& name, const char* suffix, int64_t* layer) {
  constexpr const char* kPrefix = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return false;
  const size_t n = std::strlen(suffix);
  if (name.size() < n || name.compare(name.size() - n, n, suffix) != 0) return false;
  *layer = std::atoll(name.c_str() + std::strlen(kPrefix));
  return true;
}

}  // namespace

std::optional<QuantType> GgufQuantPlan::TypeOf(const std::string& hf_name,
                                               const std::vector<int64_t>& shape,
                                               int64_t num_layers, bool tied_embeddings) const {
  if (shape.size() < 2) return std::nullopt;
  QuantType type = base;
  const bool is_output =
      hf_name == "lm_head.weight" || (tied_embeddings && hf_name == "model.embed_tokens.weight");
  int64_t layer = 0;
  if (is_output && base != QuantType::kQ8_0) {
    type = QuantType::kQ6_K;
  } else if (more_bits_mix &&
             (IsLayerTensor(hf_name, ".self_attn.v_proj.weight", &layer) ||
              IsLayerTensor(hf_name, ".mlp.down_proj.weight", &layer)) &&
             UseMoreBits(layer, num_layers)) {
    type = QuantType::kQ6_K;
  }
  if (shape.back() % LayoutOf(type).block_elements == 0) return type;
  if (shape.back() % LayoutOf(QuantType::kQ8_0).block_elements == 0) return QuantType::kQ8_0;
  return std::nullopt;
}

absl::StatusOr<GgufQuantPlan> ParseGgufQuantPlan(const std::string& name) {
  if (name == "q4_k_m") return GgufQuantPlan{QuantType::kQ4_K, true, kFileTypeQ4_K_M};
  if (name == "q5_k_m") return GgufQuantPlan{QuantType::kQ5_K, true, kFileTypeQ5_K_M};
  if (const std::optional<QuantType> type = QuantTypeFromName(name)) {
    const uint32_t file_type = *type == QuantType::kQ4_0   ? kFileTypeQ4_0
                               : *type == QuantType::kQ8_0 ? kFileTypeQ8_0
                               : *type == QuantType::kQ4_K ? kFileTypeQ4_K_S
                               : *type == QuantType::kQ5_K ? kFileTypeQ5_K_S
                                                           : kFileTypeQ6_K;
    return GgufQuantPlan{*type, false, file_type};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "quantized type must be one of q8_0, q6_k, q5_k_m, q5_k, q4_k_m, q4_k, q4_0; got '", name,
      "'"));
}

}  // namespace iquest
