#include "model/model_config.h"

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "model/json_util.h"

namespace iquest {
namespace {

// Upper bounds that keep every derived size far from overflow; real models are well inside them.
constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxContext = 1 << 24;

absl::StatusOr<Architecture> ParseArchitecture(const std::string& name, const std::string& source) {
  if (name == "LlamaForCausalLM") return Architecture::kLlama;
  if (name == "MistralForCausalLM") return Architecture::kMistral;
  if (name == "Qwen2ForCausalLM") return Architecture::kQwen2;
  if (name == "IQuestCoderForCausalLM") return Architecture::kIQuestCoder;
  if (name == "IQuestLoopCoderForCausalLM") return Architecture::kIQuestLoopCoder;
  return absl::UnimplementedError(absl::StrCat(
      source, ": architecture '", name,
      "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
      "IQuestCoderForCausalLM, IQuestLoopCoderForCausalLM)"));
}

absl::StatusOr<int64_t> PositiveInt(const JsonReader& reader, const char* key, int64_t max) {
  ASSIGN_OR_RETURN(const int64_t value, reader.Int(key));
  if (!(value >= 1 && value <= max)) {
    return reader.FieldError(key, absl::StrCat("must be in [1, ", max, "], got ", value));
  }
  return value;
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const nlohmann::json& json,
                                             const std::string& source) {
  RopeScaling scaling;
  if (json.is_null()) return scaling;
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field 'rope_scaling' must be an object or null"));
  }
  const JsonReader reader(json, std::string(source), "rope_scaling.");
  // transformers writes "rope_type"; older configs write "type".
  ASSIGN_OR_RETURN(std::string type, reader.String("rope_type", ""));
  if (type.empty()) {
    ASSIGN_OR_RETURN(type, reader.String("type", "default"));
  }
  if (type == "default") return scaling;
  ASSIGN_OR_RETURN(scaling.factor, reader.Number("factor"));
  if (!(scaling.factor >= 1.0 && scaling.factor <= 1e6)) {
    return reader.FieldError("factor", "must be in [1, 1e6]");
  }
  if (type == "linear") {
    scaling.type = RopeScalingType::kLinear;
    return scaling;
  }
  if (type == "llama3") {
    scaling.type = RopeScalingType::kLlama3;
    ASSIGN_OR_RETURN(scaling.low_freq_factor, reader.Number("low_freq_factor"));
    ASSIGN_OR_RETURN(scaling.high_freq_factor, reader.Number("high_freq_factor"));
    ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                     reader.Int("original_max_position_embeddings"));
    if (!(scaling.low_freq_factor > 0 && scaling.high_freq_factor > scaling.low_freq_factor)) {
      return reader.FieldError("high_freq_factor", "must exceed low_freq_factor (> 0)");
    }
    if (!(scaling.original_max_position_embeddings >= 1 &&
          scaling.original_max_position_embeddings <= kMaxContext)) {
      return reader.FieldError("original_max_position_embeddings", "is out of range");
    }
    return scaling;
  }
  return absl::UnimplementedError(absl::StrCat(source, ": rope_scaling type '", type,
                                               "' is not supported (supported: linear, llama3)"));
}

absl::Status ParseTokenIds(const JsonReader& reader, const nlohmann::json& json,
                           ModelConfig& config) {
  ASSIGN_OR_RETURN(const int64_t bos, reader.Int("bos_token_id", -1));
  if (bos < -1 || bos >= config.vocab_size) {
    return reader.FieldError("bos_token_id", "is outside the vocabulary");
  }
  config.bos_token_id = static_cast<int32_t>(bos);
  auto eos = json.find("eos_token_id");
  if (eos == json.end() || eos->is_null()) return absl::OkStatus();
  // A single id (most models) or a list (Llama-3 Instruct, IQuest-Coder).
  const nlohmann::json list = eos->is_array() ? *eos : nlohmann::json::array({*eos});
  for (const nlohmann::json& id : list) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= config.vocab_size) {
      return reader.FieldError("eos_token_id", "must hold token ids inside the vocabulary");
    }
    config.eos_token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return absl::OkStatus();
}

absl::Status ParseShape(const JsonReader& reader, ModelConfig& config) {
  ASSIGN_OR_RETURN(config.hidden_size, PositiveInt(reader, "hidden_size", kMaxDim));
  ASSIGN_OR_RETURN(config.intermediate_size, PositiveInt(reader, "intermediate_size", kMaxDim));
  ASSIGN_OR_RETURN(config.num_layers, PositiveInt(reader, "num_hidden_layers", kMaxLayers));
  ASSIGN_OR_RETURN(config.num_heads, PositiveInt(reader, "num_attention_heads", kMaxDim));
  config.num_kv_heads = config.num_heads;
  if (reader.Has("num_key_value_heads")) {
    ASSIGN_OR_RETURN(config.num_kv_heads, PositiveInt(reader, "num_key_value_heads", kMaxDim));
  }
  if (config.num_heads % config.num_kv_heads != 0) {
    return reader.FieldError("num_key_value_heads",
                             absl::StrCat("must divide num_attention_heads (", config.num_heads,
                                          "), got ", config.num_kv_heads));
  }
  if (reader.Has("head_dim")) {
    ASSIGN_OR_RETURN(config.head_dim, PositiveInt(reader, "head_dim", 1024));
  } else {
    if (config.hidden_size % config.num_heads != 0) {
      return reader.FieldError("hidden_size", "must be a multiple of num_attention_heads");
    }
    config.head_dim = config.hidden_size / config.num_heads;
  }
  if (config.head_dim % 2 != 0) return reader.FieldError("head_dim", "must be even for RoPE");
  ASSIGN_OR_RETURN(config.vocab_size, PositiveInt(reader, "vocab_size", kMaxVocab));
  ASSIGN_OR_RETURN(config.max_context_len,
                   PositiveInt(reader, "max_position_embeddings", kMaxContext));
  return absl::OkStatus();
}

// HF semantics: Mistral applies `sliding_window` (null: none) to every layer; Qwen2 only with
// use_sliding_window, to the layers `layer_types` calls "sliding_attention" or, without
// layer_types, to layers >= max_window_layers. Llama has no window.
absl::Status ParseSlidingWindows(const JsonReader& reader, ModelConfig& config) {
  const bool qwen2 = config.architecture == Architecture::kQwen2;
  ASSIGN_OR_RETURN(const bool use_sliding, reader.Bool("use_sliding_window", false));
  const bool windowed = config.architecture == Architecture::kMistral || (qwen2 && use_sliding);
  if (!windowed || !reader.Has("sliding_window")) return absl::OkStatus();
  ASSIGN_OR_RETURN(const int64_t window, PositiveInt(reader, "sliding_window", kMaxContext));
  config.layer_windows.assign(static_cast<size_t>(config.num_layers), window);
  if (!qwen2) return absl::OkStatus();
  const nlohmann::json& json = reader.object();
  auto types = json.find("layer_types");
  if (types != json.end() && !types->is_null()) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != config.num_layers) {
      return reader.FieldError("layer_types", absl::StrCat("must be a list of num_hidden_layers (",
                                                           config.num_layers, ") strings"));
    }
    for (int64_t i = 0; i < config.num_layers; ++i) {
      const nlohmann::json& type = (*types)[static_cast<size_t>(i)];
      const bool sliding = type == "sliding_attention";
      if (!sliding && type != "full_attention") {
        return reader.FieldError(
            "layer_types",
            absl::StrCat("[", i, "] must be \"full_attention\" or \"sliding_attention\""));
      }
      if (!sliding) config.layer_windows[static_cast<size_t>(i)] = 0;
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const int64_t max_window_layers,
                   reader.Int("max_window_layers", config.num_layers));
  if (max_window_layers < 0) return reader.FieldError("max_window_layers", "must be >= 0");
  for (int64_t i = 0; i < std::min(max_window_layers, config.num_layers); ++i) {
    config.layer_windows[static_cast<size_t>(i)] = 0;
  }
  if (max_window_layers >= config.num_layers) config.layer_windows.clear();
  return absl::OkStatus();
}

// IQuestLoopCoder's fields, with the defaults of its HF config class (loop_num 2, window 64).
absl::Status ParseLoop(const JsonReader& reader, ModelConfig& config) {
  if (!config.is_loop()) return absl::OkStatus();
  ASSIGN_OR_RETURN(config.loop_num, reader.Int("loop_num", 2));
  if (config.loop_num < 1 || config.loop_num > 16) {
    return reader.FieldError("loop_num", absl::StrCat("must be in [1, 16], got ", config.loop_num));
  }
  ASSIGN_OR_RETURN(config.loop_window, reader.Int("loop_window_size", 64));
  if (config.loop_window < 1 || config.loop_window > kMaxContext) {
    return reader.FieldError("loop_window_size", absl::StrCat("must be in [1, ", kMaxContext,
                                                              "], got ", config.loop_window));
  }
  return absl::OkStatus();
}

absl::Status ParseAttentionOptions(const JsonReader& reader, ModelConfig& config) {
  ASSIGN_OR_RETURN(config.rms_norm_eps, reader.Number("rms_norm_eps", 1e-6));
  if (!(config.rms_norm_eps > 0 && config.rms_norm_eps < 1)) {
    return reader.FieldError("rms_norm_eps", "must be in (0, 1)");
  }
  ASSIGN_OR_RETURN(config.rope_theta, reader.Number("rope_theta", 10000.0));
  if (!(config.rope_theta > 1 && config.rope_theta < 1e12)) {
    return reader.FieldError("rope_theta", "must be in (1, 1e12)");
  }
  ASSIGN_OR_RETURN(config.tie_word_embeddings, reader.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(const bool attention_bias, reader.Bool("attention_bias", false));
  ASSIGN_OR_RETURN(config.mlp_bias, reader.Bool("mlp_bias", false));
  config.qkv_bias = attention_bias || config.architecture == Architecture::kQwen2;
  config.o_bias = attention_bias && config.architecture != Architecture::kQwen2;
  ASSIGN_OR_RETURN(const std::string act, reader.String("hidden_act", "silu"));
  if (act != "silu") return reader.FieldError("hidden_act", "must be \"silu\"");
  RETURN_IF_ERROR(ParseSlidingWindows(reader, config));
  return ParseLoop(reader, config);
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromJson(std::string_view text,
                                                  const std::string& source) {
  ASSIGN_OR_RETURN(const nlohmann::json json, ParseJsonStrict(text, source));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": must be a JSON object"));
  }
  const JsonReader reader(json, std::string(source));
  ModelConfig config;
  auto archs = json.find("architectures");
  if (archs == json.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return reader.FieldError("architectures", "must be a non-empty list of strings");
  }
  config.architecture_name = (*archs)[0].get<std::string>();
  ASSIGN_OR_RETURN(config.architecture, ParseArchitecture(config.architecture_name, source));
  RETURN_IF_ERROR(ParseShape(reader, config));
  RETURN_IF_ERROR(ParseAttentionOptions(reader, config));
  auto scaling = json.find("rope_scaling");
  if (scaling != json.end()) {
    ASSIGN_OR_RETURN(config.rope_scaling, ParseRopeScaling(*scaling, source));
  }
  RETURN_IF_ERROR(ParseTokenIds(reader, json, config));
  ASSIGN_OR_RETURN(const std::string dtype, reader.String("torch_dtype", "bfloat16"));
  if (dtype == "float32") {
    config.torch_dtype = DType::kF32;
  } else if (dtype == "float16") {
    config.torch_dtype = DType::kF16;
  } else {
    config.torch_dtype = DType::kBF16;
  }
  return config;
}

absl::StatusOr<ModelConfig> ModelConfig::Load(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return FromJson(text, path);
}

std::vector<double> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  const RopeScaling& scaling = config.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(config.rope_theta,
                           -2.0 * static_cast<double>(i) / static_cast<double>(config.head_dim));
    if (scaling.type == RopeScalingType::kLinear) {
      freq /= scaling.factor;
    } else if (scaling.type == RopeScalingType::kLlama3) {
      // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
      const double original = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = original / scaling.low_freq_factor;
      const double high_freq_wavelen = original / scaling.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / freq;
      if (wavelen > low_freq_wavelen) {
        freq /= scaling.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (original / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        freq = (1.0 - smooth) * freq / scaling.factor + smooth * freq;
      }
    }
    if (!config.rope_freq_factors.empty()) freq /= config.rope_freq_factors[static_cast<size_t>(i)];
    inv_freq[static_cast<size_t>(i)] = freq;
  }
  return inv_freq;
}

}  // namespace iquest
