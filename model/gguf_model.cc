#include "model/gguf_model.h"

#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

// Per-layer tensors: GGUF suffix after "blk.N." <-> HF suffix after "model.layers.N.".
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};

// Splits "prefix<layer>.<rest>" into (layer, rest); nullopt when `name` is not of that form.
std::optional<std::pair<int64_t, std::string_view>> SplitLayer(std::string_view name,
                                                               std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  // Digits only, no leading zero: one spelling per layer, so two names never map to one.
  const std::string_view digits = name.substr(0, dot == std::string_view::npos ? 0 : dot);
  int64_t layer = 0;
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits[0] == '0') ||
      digits.find_first_not_of("0123456789") != std::string_view::npos ||
      std::from_chars(digits.data(), digits.data() + digits.size(), layer).ec != std::errc()) {
    return std::nullopt;
  }
  return std::make_pair(layer, name.substr(dot + 1));
}

// "weight" or "bias" after the module name, e.g. "attn_q" + ".weight".
std::optional<std::string> MapModule(std::string_view name, bool from_gguf) {
  for (const auto& [gguf, hf] : kGlobalNames) {
    const std::string from = from_gguf ? gguf : hf;
    const std::string to = from_gguf ? hf : gguf;
    for (const char* kind : {".weight", ".bias"}) {
      if (name == absl::StrCat(from, kind)) return absl::StrCat(to, kind);
    }
  }
  return std::nullopt;
}

std::optional<std::string> MapLayerSuffix(std::string_view suffix, bool from_gguf) {
  for (const auto& [gguf, hf] : kLayerNames) {
    const std::string from = from_gguf ? gguf : hf;
    const std::string to = from_gguf ? hf : gguf;
    for (const char* kind : {".weight", ".bias"}) {
      if (suffix == absl::StrCat(from, kind)) return absl::StrCat(to, kind);
    }
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> OptionalInt(const GgufFile& file, const std::string& key,
                                    int64_t fallback) {
  absl::StatusOr<int64_t> value = file.GetInt(key, 0, INT32_MAX);
  if (absl::IsNotFound(value.status())) return fallback;
  return value;
}

absl::StatusOr<double> OptionalFloat(const GgufFile& file, const std::string& key,
                                     double fallback) {
  absl::StatusOr<double> value = file.GetFloat(key);
  if (absl::IsNotFound(value.status())) return fallback;
  return value;
}

absl::StatusOr<nlohmann::json> RopeScalingJson(const GgufFile& file, const std::string& arch) {
  const std::string type_key = arch + ".rope.scaling.type";
  std::string type = "none";
  if (file.Find(type_key) != nullptr) {
    ASSIGN_OR_RETURN(const std::string_view value, file.GetString(type_key));
    type = std::string(value);
  }
  ASSIGN_OR_RETURN(double factor, OptionalFloat(file, arch + ".rope.scaling.factor", 0.0));
  if (type == "none" && file.Find(arch + ".rope.scale_linear") != nullptr) {
    type = "linear";  // The key older converters wrote.
    ASSIGN_OR_RETURN(factor, file.GetFloat(arch + ".rope.scale_linear"));
  }
  if (type == "none") return nlohmann::json(nullptr);
  if (type != "linear") {
    return absl::UnimplementedError(absl::StrCat(file.path(), ": key '", type_key, "' is '", type,
                                                 "' (supported: none, linear)"));
  }
  return nlohmann::json{{"rope_type", "linear"}, {"factor", factor}};
}

// llama.cpp stores llama3 RoPE scaling as per-frequency divisors: f32 [head_dim / 2], each
// finite and > 0.
absl::StatusOr<std::vector<float>> RopeFreqFactors(const GgufFile& file, int64_t head_dim) {
  const GgufTensor* tensor = file.FindTensor(kGgufRopeFreqsTensor);
  if (tensor == nullptr) return std::vector<float>();
  if (tensor->ggml_type != static_cast<uint32_t>(GgmlType::kF32) ||
      tensor->shape != std::vector<int64_t>{head_dim / 2}) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": tensor '", kGgufRopeFreqsTensor,
                                                   "' must be F32 [", head_dim / 2,
                                                   "] (head_dim / 2)"));
  }
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  std::memcpy(factors.data(), tensor->data, factors.size() * sizeof(float));
  for (float f : factors) {
    if (!(f > 0 && f < 1e30f)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.path(), ": tensor '", kGgufRopeFreqsTensor, "' holds ", f, " (allowed: > 0)"));
    }
  }
  return factors;
}

// Whether every layer's tensor `suffix` is present (checked on layer 0; the binder checks the
// rest).
bool HasLayerTensor(const GgufFile& file, const std::string& suffix) {
  return file.FindTensor("blk.0." + suffix) != nullptr;
}

}  // namespace

std::string GgufArchitecture(const ModelConfig& config) {
  return config.architecture == Architecture::kQwen2 ? "qwen2" : "llama";
}

std::optional<std::string> HfNameOfGgufTensor(std::string_view gguf_name) {
  if (auto layer = SplitLayer(gguf_name, "blk.")) {
    std::optional<std::string> suffix = MapLayerSuffix(layer->second, /*from_gguf=*/true);
    if (!suffix) return std::nullopt;
    return absl::StrCat("model.layers.", layer->first, ".", *suffix);
  }
  return MapModule(gguf_name, /*from_gguf=*/true);
}

std::optional<std::string> GgufNameOfHfTensor(std::string_view hf_name) {
  if (auto layer = SplitLayer(hf_name, "model.layers.")) {
    std::optional<std::string> suffix = MapLayerSuffix(layer->second, /*from_gguf=*/false);
    if (!suffix) return std::nullopt;
    return absl::StrCat("blk.", layer->first, ".", *suffix);
  }
  return MapModule(hf_name, /*from_gguf=*/false);
}

int64_t QkPermutationHeads(const ModelConfig& config, std::string_view hf_name) {
  if (config.architecture == Architecture::kQwen2) return 0;
  if (hf_name.find(".self_attn.q_proj.") != std::string_view::npos) return config.num_heads;
  if (hf_name.find(".self_attn.k_proj.") != std::string_view::npos) return config.num_kv_heads;
  return 0;
}

void PermuteQkRows(std::span<const uint8_t> src, std::span<uint8_t> dst, int64_t rows,
                   int64_t num_heads, bool to_gguf) {
  CHECK(num_heads > 0 && rows % (2 * num_heads) == 0) << rows << " rows, " << num_heads;
  CHECK(src.size() == dst.size() && src.size() % static_cast<size_t>(rows) == 0);
  const size_t row_bytes = src.size() / static_cast<size_t>(rows);
  const int64_t head_rows = rows / num_heads;
  const int64_t half = head_rows / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        // GGUF row h*D + 2i + j holds HF row h*D + j*half + i.
        const int64_t gguf_row = h * head_rows + 2 * i + j;
        const int64_t hf_row = h * head_rows + j * half + i;
        const int64_t from = to_gguf ? hf_row : gguf_row;
        const int64_t to = to_gguf ? gguf_row : hf_row;
        std::memcpy(dst.data() + static_cast<size_t>(to) * row_bytes,
                    src.data() + static_cast<size_t>(from) * row_bytes, row_bytes);
      }
    }
  }
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& file) {
  ASSIGN_OR_RETURN(const std::string_view arch_view, file.GetString("general.architecture"));
  const std::string arch(arch_view);
  if (arch != "llama" && arch != "qwen2") {
    return absl::UnimplementedError(absl::StrCat(file.path(), ": general.architecture '", arch,
                                                 "' is not supported (supported: llama, qwen2)"));
  }
  const GgufTensor* embed = file.FindTensor("token_embd.weight");
  if (embed == nullptr || embed->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": tensor 'token_embd.weight' must exist and be 2-D"));
  }
  // Everything is range-checked here against int32 (naming the GGUF key), then against the
  // model limits by ModelConfig::FromJson.
  const auto get = [&](const std::string& key) { return file.GetInt(arch + key, 1, INT32_MAX); };
  nlohmann::json json;
  json["architectures"] = {arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  ASSIGN_OR_RETURN(json["max_position_embeddings"], get(".context_length"));
  ASSIGN_OR_RETURN(const int64_t hidden, get(".embedding_length"));
  json["hidden_size"] = hidden;
  ASSIGN_OR_RETURN(json["num_hidden_layers"], get(".block_count"));
  ASSIGN_OR_RETURN(json["intermediate_size"], get(".feed_forward_length"));
  ASSIGN_OR_RETURN(const int64_t heads, get(".attention.head_count"));
  json["num_attention_heads"] = heads;
  ASSIGN_OR_RETURN(json["num_key_value_heads"],
                   OptionalInt(file, arch + ".attention.head_count_kv", heads));
  ASSIGN_OR_RETURN(const int64_t head_dim,
                   OptionalInt(file, arch + ".attention.key_length", hidden / heads));
  ASSIGN_OR_RETURN(const int64_t value_dim,
                   OptionalInt(file, arch + ".attention.value_length", head_dim));
  ASSIGN_OR_RETURN(const int64_t rope_dim,
                   OptionalInt(file, arch + ".rope.dimension_count", head_dim));
  if (value_dim != head_dim || rope_dim != head_dim) {
    return absl::UnimplementedError(absl::StrCat(
        file.path(), ": key_length ", head_dim, ", value_length ", value_dim,
        " and rope.dimension_count ", rope_dim, " must be equal (partial RoPE is not supported)"));
  }
  json["head_dim"] = head_dim;
  json["vocab_size"] = embed->shape[0];
  ASSIGN_OR_RETURN(const int64_t vocab_key,
                   OptionalInt(file, arch + ".vocab_size", embed->shape[0]));
  if (vocab_key != embed->shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": key '", arch, ".vocab_size' is ",
                                                   vocab_key, " but token_embd has ",
                                                   embed->shape[0], " rows"));
  }
  ASSIGN_OR_RETURN(json["rms_norm_eps"], file.GetFloat(arch + ".attention.layer_norm_rms_epsilon"));
  ASSIGN_OR_RETURN(json["rope_theta"], OptionalFloat(file, arch + ".rope.freq_base", 10000.0));
  ASSIGN_OR_RETURN(json["rope_scaling"], RopeScalingJson(file, arch));
  json["tie_word_embeddings"] = file.FindTensor("output.weight") == nullptr;
  if (arch == "llama") json["attention_bias"] = HasLayerTensor(file, "attn_q.bias");
  json["mlp_bias"] = HasLayerTensor(file, "ffn_gate.bias");
  ASSIGN_OR_RETURN(json["bos_token_id"], OptionalInt(file, "tokenizer.ggml.bos_token_id", -1));
  ASSIGN_OR_RETURN(const int64_t eos, OptionalInt(file, "tokenizer.ggml.eos_token_id", -1));
  if (eos >= 0) json["eos_token_id"] = eos;
  json["torch_dtype"] = embed->dtype == DType::kF32   ? "float32"
                        : embed->dtype == DType::kF16 ? "float16"
                                                      : "bfloat16";
  ASSIGN_OR_RETURN(ModelConfig config,
                   ModelConfig::FromJson(json.dump(), absl::StrCat(file.path(), " (metadata)")));
  ASSIGN_OR_RETURN(config.rope_freq_factors, RopeFreqFactors(file, config.head_dim));
  return config;
}

std::vector<float> RopeFreqFactorsOf(const ModelConfig& config) {
  ModelConfig unscaled = config;
  unscaled.rope_scaling = RopeScaling();
  unscaled.rope_freq_factors.clear();
  const std::vector<double> base = RopeInverseFrequencies(unscaled);
  const std::vector<double> scaled = RopeInverseFrequencies(config);
  std::vector<float> factors(base.size());
  for (size_t i = 0; i < base.size(); ++i) factors[i] = static_cast<float>(base[i] / scaled[i]);
  return factors;
}

}  // namespace iquest
