#include "tools/tiny_model.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status.h"
#include "model/safetensors_writer.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

// SplitMix64: tiny, fast and fully specified, so weights are identical on every machine
// (std:: distributions are not).
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Uniform() {
    return static_cast<float>(static_cast<double>(Next() >> 11) * 0x1.0p-52 - 1.0);
  }

 private:
  uint64_t state_;
};

// Records each tensor's shape and distribution; the values are drawn when the safetensors
// writer reaches the tensor, in the order added, so only one tensor is in memory at a time
// (a Llama-3.2-1B-shaped bf16 model is 2.5 GB) and the bytes do not depend on how they are
// written.
struct Writer {
  const TinyModelOptions& options;
  Random random;
  std::vector<StreamedTensor> tensors;

  // Uniform values with standard deviation `scale` around `center`.
  void Add(const std::string& name, std::vector<int64_t> shape, float scale, float center = 0) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const DType dtype = *FloatDTypeFromName(options.dtype);  // Checked by WriteTinyModel.
    const size_t element_size = DTypeSize(dtype);
    const std::string dtype_name =
        dtype == DType::kF32 ? "F32" : (dtype == DType::kBF16 ? "BF16" : "F16");
    const uint64_t num_bytes = static_cast<uint64_t>(numel) * element_size;
    auto fill = [this, numel, dtype, element_size, scale, center](std::vector<uint8_t>& bytes) {
      bytes.resize(static_cast<size_t>(numel) * element_size);
      const float half_width = scale * std::sqrt(3.0f);
      for (int64_t i = 0; i < numel; ++i) {
        const float value = center + half_width * random.Uniform();
        if (dtype == DType::kF32) {
          std::memcpy(&bytes[i * 4], &value, 4);
        } else {
          const uint16_t half = dtype == DType::kBF16 ? FloatToBf16(value) : FloatToF16(value);
          std::memcpy(&bytes[i * 2], &half, 2);
        }
      }
      return absl::OkStatus();
    };
    tensors.push_back({name, dtype_name, std::move(shape), num_bytes, fill});
  }
};

nlohmann::ordered_json MakeConfig(const TinyModelOptions& o, int64_t head_dim) {
  const bool qwen2 = o.arch == "qwen2";
  const bool mistral = o.arch == "mistral";
  const bool loop = o.arch == "loop";
  const char* arch = qwen2     ? "Qwen2ForCausalLM"
                     : mistral ? "MistralForCausalLM"
                     : loop    ? "IQuestLoopCoderForCausalLM"
                               : "LlamaForCausalLM";
  nlohmann::ordered_json config = {
      {"architectures", {arch}},
      {"model_type", loop ? "iquestloopcoder" : o.arch},
      {"hidden_size", o.hidden_size},
      {"intermediate_size", o.intermediate_size},
      {"num_hidden_layers", o.num_layers},
      {"num_attention_heads", o.num_heads},
      {"num_key_value_heads", o.num_kv_heads},
      {"head_dim", head_dim},
      {"hidden_act", "silu"},
      {"max_position_embeddings", o.max_position_embeddings},
      {"rms_norm_eps", o.rms_norm_eps},
      {"rope_theta", o.rope_theta},
      {"tie_word_embeddings", o.tie_word_embeddings},
      {"vocab_size", o.vocab_size},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", o.dtype == "f32" ? "float32" : (o.dtype == "bf16" ? "bfloat16" : "float16")},
  };
  if (loop) {
    config["loop_num"] = o.loop_num;
    config["loop_window_size"] = o.loop_window;
    config["attention_bias"] = false;
    config["mlp_bias"] = false;
  }
  if (mistral) {
    config["sliding_window"] = o.sliding_window > 0 ? nlohmann::ordered_json(o.sliding_window)
                                                    : nlohmann::ordered_json(nullptr);
  } else if (qwen2 && o.sliding_window > 0) {
    config["use_sliding_window"] = true;
    config["sliding_window"] = o.sliding_window;
    config["max_window_layers"] = 1;
  }
  if (o.rope_scaling == "linear") {
    config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  } else if (o.rope_scaling == "llama3") {
    // With head_dim 32 and theta >= 1e4 these put frequencies in all three llama3 bands.
    config["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", 8.0},
                              {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 4096}};
  } else {
    config["rope_scaling"] = nullptr;
  }
  return config;
}

}  // namespace

absl::Status WriteTinyModel(const std::string& dir, const TinyModelOptions& o) {
  if (o.arch != "llama" && o.arch != "mistral" && o.arch != "qwen2" && o.arch != "loop") {
    return absl::InvalidArgumentError("--arch must be llama, mistral, qwen2 or loop");
  }
  if (o.sliding_window < 0 || (o.sliding_window > 0 && (o.arch == "llama" || o.arch == "loop"))) {
    return absl::InvalidArgumentError("--sliding-window must be >= 0, and 0 for llama and loop");
  }
  if (o.loop_num < 1 || o.loop_num > 16 || o.loop_window < 1) {
    return absl::InvalidArgumentError("--loop-num must be in [1, 16] and --window >= 1");
  }
  if (!FloatDTypeFromName(o.dtype).has_value()) {
    return absl::InvalidArgumentError("--dtype must be f32, f16 or bf16");
  }
  if (o.rope_scaling != "none" && o.rope_scaling != "linear" && o.rope_scaling != "llama3") {
    return absl::InvalidArgumentError("--rope-scaling must be none, linear or llama3");
  }
  if (o.hidden_size < 1 || o.num_layers < 1 || o.num_heads < 1 || o.num_kv_heads < 1 ||
      o.num_heads % o.num_kv_heads != 0 || o.vocab_size < 3 || o.intermediate_size < 1) {
    return absl::InvalidArgumentError("sizes must be positive and kv heads must divide heads");
  }
  const int64_t head_dim = o.head_dim > 0 ? o.head_dim : o.hidden_size / o.num_heads;
  ::mkdir(dir.c_str(), 0755);
  Writer w{o, Random(o.seed), {}};
  const int64_t h = o.hidden_size;
  const int64_t q_out = o.num_heads * head_dim;
  const int64_t kv_out = o.num_kv_heads * head_dim;
  const int64_t inter = o.intermediate_size;
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(h));
  w.Add("model.embed_tokens.weight", {o.vocab_size, h}, 1.0f);
  for (int64_t layer = 0; layer < o.num_layers; ++layer) {
    const std::string p = absl::StrCat("model.layers.", layer, ".");
    w.Add(p + "input_layernorm.weight", {h}, 0.1f, 1.0f);
    w.Add(p + "self_attn.q_proj.weight", {q_out, h}, in_scale);
    w.Add(p + "self_attn.k_proj.weight", {kv_out, h}, in_scale);
    w.Add(p + "self_attn.v_proj.weight", {kv_out, h}, in_scale);
    if (o.arch == "qwen2") {
      w.Add(p + "self_attn.q_proj.bias", {q_out}, 0.1f);
      w.Add(p + "self_attn.k_proj.bias", {kv_out}, 0.1f);
      w.Add(p + "self_attn.v_proj.bias", {kv_out}, 0.1f);
    }
    w.Add(p + "self_attn.o_proj.weight", {h, q_out}, 1.0f / std::sqrt(static_cast<float>(q_out)));
    w.Add(p + "post_attention_layernorm.weight", {h}, 0.1f, 1.0f);
    w.Add(p + "mlp.gate_proj.weight", {inter, h}, in_scale);
    w.Add(p + "mlp.up_proj.weight", {inter, h}, in_scale);
    w.Add(p + "mlp.down_proj.weight", {h, inter}, 1.0f / std::sqrt(static_cast<float>(inter)));
  }
  // The Loop gates sit outside model.layers, as in the published checkpoint.
  if (o.arch == "loop" && o.loop_num > 1) {
    for (int64_t layer = 0; layer < o.num_layers; ++layer) {
      const std::string p = absl::StrCat("model.gate_projections.", layer, ".");
      w.Add(p + "weight", {o.num_heads, head_dim},
            static_cast<float>(o.gate_scale) / std::sqrt(static_cast<float>(head_dim)));
      w.Add(p + "bias", {o.num_heads}, 0.5f, static_cast<float>(o.gate_bias));
    }
  }
  w.Add("model.norm.weight", {h}, 0.1f, 1.0f);
  if (!o.tie_word_embeddings) w.Add("lm_head.weight", {o.vocab_size, h}, in_scale);
  RETURN_IF_ERROR(WriteSafetensorsStreamed(dir + "/model.safetensors", w.tensors));
  std::ofstream config(dir + "/config.json", std::ios::trunc);
  config << MakeConfig(o, head_dim).dump(2) << "\n";
  config.close();
  if (!config) return absl::DataLossError(absl::StrCat(dir, "/config.json: write failed"));
  return absl::OkStatus();
}

}  // namespace iquest
