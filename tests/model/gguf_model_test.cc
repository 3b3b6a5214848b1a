// GGUF as a model format: tiny HF checkpoints (llama and qwen2, f32 and bf16, tied and untied)
// converted by iquest-convert-hf-to-gguf's library give bit-identical logits through the GGUF
// loader (same weights, same kernels); the Q/K permutation matches llama.cpp's; the metadata
// becomes the same ModelConfig; and --model finds the file.
#include "model/gguf_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/llama.h"
#include "model/model_files.h"
#include "model/safetensors.h"
#include "model/tokenizer/spm_processor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_model.h"
#include "tools/hf_to_gguf.h"

namespace iquest {
namespace {

// The number of pieces of the random model's SentencePiece tokenizer (about 4096; it is trained
// on the project's sources at build time).
int64_t DemoTokenizerPieces() {
  static const int64_t pieces = [] {
    std::string error;
    auto spm = SpmProcessor::Load(IQUEST_DEMO_TOKENIZER, &error);
    return spm == nullptr ? int64_t{0} : int64_t{spm->size()};
  }();
  return pieces;
}

absl::Status WriteModelWithTokenizer(const std::string& dir, const TinyModelOptions& options) {
  RETURN_IF_ERROR(WriteTinyModel(dir, options));
  std::error_code error;
  std::filesystem::copy_file(IQUEST_DEMO_TOKENIZER, dir + "/tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing, error);
  if (error) return absl::InternalError("cannot copy the demo tokenizer: " + error.message());
  return absl::OkStatus();
}

// Prefills `prompt` in one step and returns every position's logits.
absl::StatusOr<std::vector<float>> PromptLogits(const std::string& model_path,
                                                const std::vector<int32_t>& prompt) {
  CpuBackend backend;
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(model_path, backend));
  KvCacheConfig cache_config;
  cache_config.block_size = 4;
  cache_config.num_blocks = (static_cast<int64_t>(prompt.size()) + 3) / 4;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(backend, model->config(), cache_config));
  std::vector<int32_t> blocks(static_cast<size_t>(cache_config.num_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  BatchBuilder builder(cache_config.block_size);
  builder.AddSequence(prompt, 0, blocks, LogitsWanted::kAll);
  std::vector<float> logits;
  RETURN_IF_ERROR(model->Forward(builder.Build(), *cache, logits));
  return logits;
}

struct Variant {
  std::string arch;
  std::string dtype;
  bool tied;
};

class GgufParityTest : public ::testing::TestWithParam<Variant> {};

TEST_P(GgufParityTest, ConvertedModelGivesBitIdenticalLogits) {
  const Variant& v = GetParam();
  testing::TempDir dir;
  TinyModelOptions options;
  options.arch = v.arch;
  options.dtype = v.dtype;
  options.tie_word_embeddings = v.tied;
  options.hidden_size = 64;
  options.num_heads = 4;
  options.num_kv_heads = 2;
  options.vocab_size = DemoTokenizerPieces() + 100;  // The tokenizer is padded up to it.
  options.rope_theta = 500000.0;
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  const std::string gguf_path = dir.Join("model.gguf");
  ASSERT_OK(ConvertHfToGguf({dir.path(), gguf_path, "keep", "", ""}));

  const int32_t vocab = static_cast<int32_t>(options.vocab_size);
  const std::vector<int32_t> prompt = {1, 17, 400, vocab - 1, vocab - 50, 3, 3, 99, 2048, 7};
  ASSERT_OK_AND_ASSIGN(const std::vector<float> expected, PromptLogits(dir.path(), prompt));
  ASSERT_OK_AND_ASSIGN(const std::vector<float> actual, PromptLogits(gguf_path, prompt));
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(0, std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)));

  CpuBackend backend;
  ASSERT_OK_AND_ASSIGN(auto from_json, LlamaModel::Load(dir.path(), backend));
  ASSERT_OK_AND_ASSIGN(auto from_gguf, LlamaModel::Load(gguf_path, backend));
  const ModelConfig& a = from_json->config();
  const ModelConfig& b = from_gguf->config();
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_context_len, b.max_context_len);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(static_cast<float>(a.rms_norm_eps), static_cast<float>(b.rms_norm_eps));
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, GgufParityTest,
    ::testing::Values(Variant{"llama", "f32", false}, Variant{"llama", "bf16", true},
                      Variant{"llama", "f16", false}, Variant{"qwen2", "f32", true},
                      Variant{"qwen2", "bf16", false}),
    [](const auto& info) {
      return info.param.arch + "_" + info.param.dtype + (info.param.tied ? "_tied" : "_untied");
    });

TEST(GgufModelTest, TheDemoTokenizerIsThere) { ASSERT_GT(DemoTokenizerPieces(), 3000); }

TEST(GgufModelTest, HeadDimAndLinearRopeScalingSurviveConversion) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.head_dim = 32;  // Not hidden / heads (16).
  options.rope_scaling = "linear";
  options.vocab_size = DemoTokenizerPieces();
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  ASSERT_OK(ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", ""}));
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9};
  ASSERT_OK_AND_ASSIGN(const std::vector<float> expected, PromptLogits(dir.path(), prompt));
  ASSERT_OK_AND_ASSIGN(const std::vector<float> actual, PromptLogits(dir.Join("m.gguf"), prompt));
  EXPECT_EQ(actual, expected);
}

TEST(GgufModelTest, Llama3RopeScalingTravelsAsRopeFreqs) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.head_dim = 32;  // With theta 1e4, frequencies fall in all three llama3 bands.
  options.rope_scaling = "llama3";
  options.vocab_size = DemoTokenizerPieces();
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  ASSERT_OK(ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", ""}));
  ASSERT_OK_AND_ASSIGN(auto gguf, GgufFile::Open(dir.Join("m.gguf")));
  const GgufTensor* freqs = gguf->FindTensor("rope_freqs.weight");
  ASSERT_NE(freqs, nullptr);
  EXPECT_EQ(freqs->shape, std::vector<int64_t>{16});
  ASSERT_OK_AND_ASSIGN(const ModelConfig from_gguf, ModelConfigFromGguf(*gguf));
  ASSERT_OK_AND_ASSIGN(const ModelConfig from_json, ModelConfig::Load(dir.path()));
  const std::vector<double> expected = RopeInverseFrequencies(from_json);
  const std::vector<double> actual = RopeInverseFrequencies(from_gguf);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-7 * expected[i]) << i;  // Divisors are f32.
  }
  // Not bit-identical (the divisors are rounded to f32), but the same model.
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_OK_AND_ASSIGN(const std::vector<float> want, PromptLogits(dir.path(), prompt));
  ASSERT_OK_AND_ASSIGN(const std::vector<float> got, PromptLogits(dir.Join("m.gguf"), prompt));
  ASSERT_EQ(got.size(), want.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

// Row r of a matrix whose every element in row r is r: shows where each row went.
std::vector<uint8_t> RowIds(int64_t rows) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * 2);
  for (int64_t r = 0; r < rows; ++r) bytes[2 * r] = bytes[2 * r + 1] = static_cast<uint8_t>(r);
  return bytes;
}

TEST(GgufModelTest, PermutationMatchesLlamaCppAndInverts) {
  // numpy: w.reshape(2, 2, 2).swapaxes(1, 2).reshape(8) of arange(8) = [0 2 1 3 4 6 5 7].
  const std::vector<uint8_t> hf = RowIds(8);
  std::vector<uint8_t> gguf(hf.size()), back(hf.size());
  PermuteQkRows(hf, gguf, 8, 2, /*to_gguf=*/true);
  const std::vector<uint8_t> expected_order = {0, 2, 1, 3, 4, 6, 5, 7};
  for (size_t r = 0; r < 8; ++r) EXPECT_EQ(gguf[2 * r], expected_order[r]) << r;
  PermuteQkRows(gguf, back, 8, 2, /*to_gguf=*/false);
  EXPECT_EQ(back, hf);
}

TEST(GgufModelTest, LlamaQkRowsArePermutedInTheFileAndQwen2sAreNot) {
  for (const std::string arch : {"llama", "qwen2"}) {
    testing::TempDir dir;
    TinyModelOptions options;
    options.arch = arch;
    options.vocab_size = DemoTokenizerPieces();
    ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
    ASSERT_OK(ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", ""}));
    ASSERT_OK_AND_ASSIGN(auto hf, SafetensorsFile::Open(dir.Join("model.safetensors")));
    ASSERT_OK_AND_ASSIGN(auto gguf, GgufFile::Open(dir.Join("m.gguf")));
    const SafetensorsTensor* q = hf->Find("model.layers.1.self_attn.k_proj.weight");
    const GgufTensor* gq = gguf->FindTensor("blk.1.attn_k.weight");
    ASSERT_NE(q, nullptr);
    ASSERT_NE(gq, nullptr);
    ASSERT_EQ(q->num_bytes, gq->num_bytes);
    const size_t row_bytes = q->num_bytes / static_cast<size_t>(q->shape[0]);
    const int64_t half = 64 / 4 / 2;  // head_dim / 2.
    // GGUF row 1 is HF row head_dim / 2 for llama, row 1 for qwen2.
    const int64_t source_row = arch == "llama" ? half : 1;
    EXPECT_EQ(0, std::memcmp(gq->data + row_bytes, q->data + source_row * row_bytes, row_bytes))
        << arch;
    // 1-D tensors are f32 in the file, as llama.cpp writes them.
    EXPECT_EQ(gguf->FindTensor("blk.0.attn_norm.weight")->dtype, DType::kF32);
  }
}

TEST(GgufModelTest, TokenizerIsPaddedToTheVocabulary) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.vocab_size = DemoTokenizerPieces() + 3;
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  ASSERT_OK(ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", "tiny"}));
  ASSERT_OK_AND_ASSIGN(auto gguf, GgufFile::Open(dir.Join("m.gguf")));
  ASSERT_OK_AND_ASSIGN(const GgufValue* tokens,
                       gguf->GetArray("tokenizer.ggml.tokens", GgufValueType::kString));
  ASSERT_EQ(tokens->count, static_cast<uint64_t>(options.vocab_size));
  EXPECT_EQ(tokens->strings[1], "<s>");
  EXPECT_EQ(tokens->strings.back(), absl::StrCat("<unused_", options.vocab_size - 1, ">"));
  ASSERT_OK_AND_ASSIGN(const GgufValue* types,
                       gguf->GetArray("tokenizer.ggml.token_type", GgufValueType::kI32));
  EXPECT_EQ(types->AsInt(1), 3);                          // Control.
  EXPECT_EQ(types->AsInt(DemoTokenizerPieces() + 2), 5);  // Unused.
  ASSERT_OK_AND_ASSIGN(std::string_view model, gguf->GetString("tokenizer.ggml.model"));
  EXPECT_EQ(model, "llama");
  ASSERT_OK_AND_ASSIGN(std::string_view name, gguf->GetString("general.name"));
  EXPECT_EQ(name, "tiny");
  EXPECT_EQ(*gguf->GetInt("general.file_type", 0, 100), 0);  // All f32.
}

TEST(GgufModelTest, ConverterRefusesWhatItCannotExport) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.vocab_size = 100;
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  const absl::Status no_tokenizer =
      ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", ""});
  EXPECT_NE(no_tokenizer.message().find("tokenizer.model"), std::string_view::npos) << no_tokenizer;
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  const absl::Status too_big = ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "", ""});
  EXPECT_NE(too_big.message().find("more than the model's vocab_size 100"), std::string_view::npos)
      << too_big;
  const absl::Status dtype = ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "q8", "", ""});
  EXPECT_EQ(dtype.code(), absl::StatusCode::kInvalidArgument);
  const absl::Status quant = ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "keep", "q3_k", ""});
  EXPECT_EQ(quant.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(quant.message().find("q8_0, q6_k, q5_k_m, q5_k, q4_k_m, q4_k, q4_0; got 'q3_k'"),
            std::string_view::npos)
      << quant;
}

TEST(GgufModelTest, DtypeConversionOnWrite) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.vocab_size = DemoTokenizerPieces();
  ASSERT_OK(WriteModelWithTokenizer(dir.path(), options));
  ASSERT_OK(ConvertHfToGguf({dir.path(), dir.Join("m.gguf"), "bf16", "", ""}));
  ASSERT_OK_AND_ASSIGN(auto gguf, GgufFile::Open(dir.Join("m.gguf")));
  EXPECT_EQ(gguf->FindTensor("token_embd.weight")->dtype, DType::kBF16);
  EXPECT_EQ(gguf->FindTensor("output_norm.weight")->dtype, DType::kF32);
  EXPECT_EQ(*gguf->GetInt("general.file_type", 0, 100), 32);  // Mostly bf16.
  CpuBackend backend;
  EXPECT_OK(LlamaModel::Load(dir.Join("m.gguf"), backend).status());
}

// Metadata problems are errors naming the file and the key.
class GgufConfigTest : public ::testing::Test {
 protected:
  absl::Status LoadWith(const std::function<void(GgufWriter&)>& metadata) {
    GgufWriter writer;
    metadata(writer);
    static const std::vector<uint8_t> embed(16 * 8 * 4);
    writer.AddTensor("token_embd.weight", GgmlType::kF32, {16, 8},
                     [](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
                       return std::span<const uint8_t>(embed);
                     });
    RETURN_IF_ERROR(writer.Write(dir_.Join("c.gguf")));
    ASSIGN_OR_RETURN(auto file, GgufFile::Open(dir_.Join("c.gguf")));
    return ModelConfigFromGguf(*file).status();
  }
  static void Llama(GgufWriter& w) {
    w.SetString("general.architecture", "llama");
    w.SetU32("llama.context_length", 128);
    w.SetU32("llama.embedding_length", 8);
    w.SetU32("llama.feed_forward_length", 16);
    w.SetU32("llama.attention.head_count", 2);
    w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  }
  testing::TempDir dir_;
};

TEST_F(GgufConfigTest, ValidMetadata) {
  EXPECT_OK(LoadWith([](GgufWriter& w) {
    Llama(w);
    w.SetU32("llama.block_count", 2);
  }));
}

TEST_F(GgufConfigTest, Errors) {
  const auto expect = [](const absl::Status& status, std::string_view part) {
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.message().find("c.gguf"), std::string_view::npos) << status;
    EXPECT_NE(std::string(status.message()).find(part), std::string::npos) << status;
  };
  expect(LoadWith(Llama), "missing key 'llama.block_count'");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetU32("llama.block_count", 100000);
         }),
         "num_hidden_layers");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetString("llama.block_count", "2");
         }),
         "'llama.block_count' must be an integer, got string");
  expect(LoadWith([](GgufWriter& w) { w.SetString("general.architecture", "gpt2"); }),
         "general.architecture 'gpt2' is not supported");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetU32("llama.block_count", 2);
           w.SetU32("llama.rope.dimension_count", 2);
         }),
         "partial RoPE");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetU32("llama.block_count", 2);
           w.SetString("llama.rope.scaling.type", "yarn");
         }),
         "'yarn' (supported: none, linear)");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetU32("llama.block_count", 2);
           w.SetU32("llama.vocab_size", 17);
         }),
         "token_embd has 16 rows");
  expect(LoadWith([](GgufWriter& w) {
           Llama(w);
           w.SetU32("llama.block_count", 2);
           static const std::vector<uint8_t> freqs(3 * 4);
           w.AddTensor("rope_freqs.weight", GgmlType::kF32, {3},
                       [](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
                         return std::span<const uint8_t>(freqs);
                       });
         }),
         "'rope_freqs.weight' must be F32 [2]");
}

// A GGUF whose tensors do not fit its metadata: the error names the file and the GGUF tensor.
TEST(GgufModelTest, BindingErrorsUseGgufNames) {
  testing::TempDir dir;
  GgufWriter writer;
  writer.SetString("general.architecture", "llama");
  writer.SetU32("llama.context_length", 128);
  writer.SetU32("llama.embedding_length", 8);
  writer.SetU32("llama.block_count", 1);
  writer.SetU32("llama.feed_forward_length", 16);
  writer.SetU32("llama.attention.head_count", 2);
  writer.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  static const std::vector<uint8_t> bytes(16 * 8 * 4);
  const auto zeros = [](size_t n) {
    return [n](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
      return std::span<const uint8_t>(bytes).first(n);
    };
  };
  writer.AddTensor("token_embd.weight", GgmlType::kF32, {16, 8}, zeros(16 * 8 * 4));
  writer.AddTensor("blk.0.attn_norm.weight", GgmlType::kF32, {8}, zeros(8 * 4));
  writer.AddTensor("blk.0.attn_q.weight", GgmlType::kF32, {4, 8}, zeros(4 * 8 * 4));
  ASSERT_OK(writer.Write(dir.Join("bad.gguf")));  // attn_q should be [8, 8].
  CpuBackend backend;
  const absl::Status status = LlamaModel::Load(dir.Join("bad.gguf"), backend).status();
  EXPECT_NE(std::string(status.message())
                .find("bad.gguf: tensor 'blk.0.attn_q.weight' has shape "
                      "[4, 8], expected [8, 8]"),
            std::string::npos)
      << status;
}

TEST(ModelFilesTest, FindsTheGgufFileOrFolder) {
  testing::TempDir dir;
  EXPECT_EQ(FindModelFiles(dir.Join("nope")).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(dir.Join("a.gguf")) << "x";
  ASSERT_OK_AND_ASSIGN(ModelFiles one, FindModelFiles(dir.path()));
  EXPECT_EQ(one.gguf_path, dir.Join("a.gguf"));
  EXPECT_EQ(one.folder, dir.path());
  ASSERT_OK_AND_ASSIGN(ModelFiles file, FindModelFiles(dir.Join("a.gguf")));
  EXPECT_EQ(file.gguf_path, dir.Join("a.gguf"));
  EXPECT_EQ(file.folder, dir.path());
  std::ofstream(dir.Join("b.gguf")) << "x";
  EXPECT_NE(FindModelFiles(dir.path()).status().message().find("holds 2 .gguf files"),
            std::string_view::npos);
  std::ofstream(dir.Join("model.safetensors")) << "x";
  ASSERT_OK_AND_ASSIGN(ModelFiles both, FindModelFiles(dir.path()));
  EXPECT_TRUE(both.gguf_path.empty());  // Safetensors win in a folder holding both.
  std::ofstream(dir.Join("notes.txt")) << "x";
  EXPECT_EQ(FindModelFiles(dir.Join("notes.txt")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
