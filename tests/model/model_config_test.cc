#include "model/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

constexpr char kIQuest40B[] = R"({
  "architectures": ["IQuestCoderForCausalLM"], "model_type": "iquestcoder",
  "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 80,
  "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
  "rope_scaling": null, "tie_word_embeddings": false, "vocab_size": 76800,
  "bos_token_id": 1, "eos_token_id": [2, 75864, 75869], "hidden_act": "silu",
  "attention_bias": false, "mlp_bias": false, "torch_dtype": "bfloat16"})";

TEST(ModelConfigTest, ParsesIQuestCoder40B) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(kIQuest40B, "config.json"));
  EXPECT_EQ(c.architecture, Architecture::kIQuestCoder);
  EXPECT_EQ(c.num_layers, 80);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_context_len, 131072);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 75864, 75869}));
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(ModelConfigTest, Qwen2HasQkvBiasAndDefaultsHeadDim) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
    "vocab_size": 151936, "eos_token_id": 151643})",
                                                                  "config.json"));
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(ModelConfigTest, MistralSlidingWindowIsEveryLayersWindow) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 32768, "sliding_window": 4096, "vocab_size": 32000})",
                                                                  "config.json"));
  EXPECT_EQ(c.max_context_len, 32768);  // The window no longer caps the context.
  ASSERT_EQ(c.layer_windows.size(), 32u);
  EXPECT_EQ(c.LayerWindow(0), 4096);
  EXPECT_EQ(c.LayerWindow(31), 4096);
  // Mistral v0.2+ writes "sliding_window": null: full attention.
  ASSERT_OK_AND_ASSIGN(const ModelConfig v2, ModelConfig::FromJson(R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 32768,
    "sliding_window": null, "vocab_size": 100})",
                                                                   "config.json"));
  EXPECT_TRUE(v2.layer_windows.empty());
  EXPECT_EQ(v2.LayerWindow(1), 0);
}

TEST(ModelConfigTest, Qwen2SlidingWindowFollowsMaxWindowLayersAndLayerTypes) {
  const std::string base = R"("architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
    "max_position_embeddings": 4096, "vocab_size": 100, "sliding_window": 256)";
  ASSERT_OK_AND_ASSIGN(ModelConfig off, ModelConfig::FromJson("{" + base + "}", "c.json"));
  EXPECT_TRUE(off.layer_windows.empty());  // use_sliding_window defaults to false.
  ASSERT_OK_AND_ASSIGN(ModelConfig upper,
                       ModelConfig::FromJson("{" + base + R"(, "use_sliding_window": true,
                                            "max_window_layers": 2})",
                                             "c.json"));
  EXPECT_EQ(upper.layer_windows, (std::vector<int64_t>{0, 0, 256, 256}));
  ASSERT_OK_AND_ASSIGN(
      ModelConfig typed,
      ModelConfig::FromJson("{" + base + R"(, "use_sliding_window": true, "layer_types":
          ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]})",
                            "c.json"));
  EXPECT_EQ(typed.layer_windows, (std::vector<int64_t>{256, 0, 256, 0}));
  const absl::StatusOr<ModelConfig> bad = ModelConfig::FromJson(
      "{" + base + R"(, "use_sliding_window": true, "layer_types": ["sliding_attention"]})",
      "c.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), testing::HasSubstr("layer_types"));
}

TEST(ModelConfigTest, Llama3RopeScalingMatchesTheFormula) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 131072, "rope_theta": 500000.0, "vocab_size": 128256,
    "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})",
                                                                  "config.json"));
  const std::vector<double> inv_freq = RopeInverseFrequencies(c);
  ASSERT_EQ(inv_freq.size(), 32u);
  int kept = 0, scaled = 0, blended = 0;
  for (int i = 0; i < 32; ++i) {
    const double base = std::pow(500000.0, -2.0 * i / 64);
    const double wavelen = 2 * std::numbers::pi / base;
    if (wavelen < 8192.0 / 4) {
      EXPECT_DOUBLE_EQ(inv_freq[i], base);
      ++kept;
    } else if (wavelen > 8192.0) {
      EXPECT_DOUBLE_EQ(inv_freq[i], base / 32);
      ++scaled;
    } else {
      const double smooth = (8192.0 / wavelen - 1) / 3;
      EXPECT_NEAR(inv_freq[i], (1 - smooth) * base / 32 + smooth * base, 1e-15);
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(scaled, 0);
  EXPECT_GT(blended, 0);
}

TEST(ModelConfigTest, LinearRopeScalingDividesByTheFactor) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 64,
    "vocab_size": 32, "rope_scaling": {"type": "linear", "factor": 4.0}})",
                                                                  "config.json"));
  const std::vector<double> inv_freq = RopeInverseFrequencies(c);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    EXPECT_DOUBLE_EQ(inv_freq[i], std::pow(10000.0, -2.0 * i / 16) / 4);
  }
}

TEST(ModelConfigTest, RejectsBadConfigsWithTheFieldName) {
  const std::string base = R"("hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 64,
    "vocab_size": 32)";
  struct Case {
    std::string json;
    std::string expected_text;
  } cases[] = {
      {"{not json", "invalid JSON"},
      {"[1, 2]", "must be a JSON object"},
      {R"({"architectures": ["GPT2LMHeadModel"], )" + base + "}", "GPT2LMHeadModel"},
      {R"({"architectures": ["LlamaForCausalLM"], "hidden_size": -1, "intermediate_size": 1,
           "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 64,
           "vocab_size": 32})",
       "hidden_size"},
      {R"({"architectures": ["LlamaForCausalLM"], "num_key_value_heads": 3, )" + base + "}",
       "num_key_value_heads"},
      {R"({"architectures": ["LlamaForCausalLM"], "hidden_act": "gelu", )" + base + "}",
       "hidden_act"},
      {R"({"architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type": "yarn",
           "factor": 4.0}, )" +
           base + "}",
       "yarn"},
      {R"({"architectures": ["LlamaForCausalLM"], "eos_token_id": 99, )" + base + "}",
       "eos_token_id"},
      {R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 7, )" + base + "}",
       "duplicate key"},
      {R"({"architectures": ["LlamaForCausalLM"], "rms_norm_eps": "small", )" + base + "}",
       "rms_norm_eps"},
  };
  for (const Case& c : cases) {
    const auto config = ModelConfig::FromJson(c.json, "config.json");
    ASSERT_FALSE(config.ok()) << c.json;
    EXPECT_NE(config.status().message().find(c.expected_text), absl::string_view::npos)
        << config.status();
    EXPECT_NE(config.status().message().find("config.json"), absl::string_view::npos)
        << config.status();
  }
}

// IQuest-Coder-V1-40B-Loop-Instruct's config.json as published (field for field, as the
// mlx-community conversion copies it, without its quantization block).
TEST(ModelConfigTest, ParsesThePublished40BLoopConfig) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::FromJson(R"({
    "architectures": ["IQuestLoopCoderForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "eos_token_id": [2, 75864, 75869], "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 5120, "initializer_range": 0.02,
    "intermediate_size": 27648, "loop_num": 2, "loop_window_size": 64,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "iquestloopcoder",
    "num_attention_heads": 40, "num_hidden_layers": 80, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 500000, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 76800})",
                                                                  "config.json"));
  EXPECT_EQ(c.architecture, Architecture::kIQuestLoopCoder);
  EXPECT_TRUE(c.is_loop());
  EXPECT_EQ(c.loop_num, 2);
  EXPECT_EQ(c.loop_window, 64);
  EXPECT_EQ(c.num_layers, 80);
  EXPECT_EQ(c.num_kv_layers(), 160);  // Pass 1's global layers, then pass 2's local ones.
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_heads, 40);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.vocab_size, 76800);
  EXPECT_EQ(c.max_context_len, 131072);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.tie_word_embeddings);
  EXPECT_TRUE(c.layer_windows.empty());  // Pass 1 is global; only the local branch is windowed.
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 75864, 75869}));
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
}

TEST(ModelConfigTest, LoopFieldsDefaultAndAreRangeChecked) {
  const std::string base = R"("architectures": ["IQuestLoopCoderForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "max_position_embeddings": 256, "vocab_size": 100)";
  ASSERT_OK_AND_ASSIGN(const ModelConfig defaults, ModelConfig::FromJson("{" + base + "}", "c"));
  EXPECT_EQ(defaults.loop_num, 2);  // The HF config class's defaults.
  EXPECT_EQ(defaults.loop_window, 64);
  for (const char* bad : {R"("loop_num": 0)", R"("loop_num": 17)", R"("loop_window_size": 0)"}) {
    const absl::StatusOr<ModelConfig> c =
        ModelConfig::FromJson("{" + base + ", " + bad + "}", "config.json");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(c.status().message(), testing::HasSubstr(std::string(bad).substr(1, 8))) << bad;
  }
  // Other architectures have one pass and no loop fields.
  ASSERT_OK_AND_ASSIGN(
      const ModelConfig llama,
      ModelConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 256, "vocab_size": 100, "loop_num": 3})",
                            "c"));
  EXPECT_EQ(llama.loop_num, 1);
  EXPECT_EQ(llama.num_kv_layers(), 2);
}

}  // namespace
}  // namespace iquest
