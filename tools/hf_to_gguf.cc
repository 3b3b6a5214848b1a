#include "tools/hf_to_gguf.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/log.h"
#include "common/status.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"
#include "model/gguf_writer.h"
#include "model/model_config.h"
#include "model/tokenizer/spm_processor.h"
#include "tools/gguf_quant_plan.h"

namespace iquest {
namespace {

// llama.cpp's LlamaFileType values for general.file_type.
constexpr uint32_t kFileTypeAllF32 = 0;
constexpr uint32_t kFileTypeMostlyF16 = 1;
constexpr uint32_t kFileTypeMostlyBF16 = 32;

// llama.cpp's token types (gguf-py TokenType).
constexpr int32_t kTokenNormal = 1;
constexpr int32_t kTokenUnknown = 2;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenUnused = 5;
constexpr int32_t kTokenByte = 6;

// The score llama.cpp's converter gives padding tokens: never chosen by its SPM merges.
constexpr float kPlaceholderScore = -1000.0f;

absl::StatusOr<DType> ParseDType(const std::string& name) {
  if (const std::optional<DType> dtype = FloatDTypeFromName(name)) return *dtype;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype must be keep, f32, f16 or bf16, got '", name, "'"));
}

std::string FolderName(const std::string& dir) {
  const size_t last = dir.find_last_not_of('/');
  const std::string trimmed = dir.substr(0, last == std::string::npos ? 0 : last + 1);
  return trimmed.substr(trimmed.find_last_of('/') + 1);
}

void WriteHyperparameters(const ModelConfig& c, GgufWriter& writer) {
  const std::string arch = GgufArchitecture(c);
  const auto u32 = [&](const char* key, int64_t value) {
    writer.SetU32(arch + key, static_cast<uint32_t>(value));
  };
  u32(".vocab_size", c.vocab_size);
  // llama.cpp's llama and qwen2 architectures read no sliding window: the context is capped at
  // the shortest one, where full attention and the window agree.
  int64_t context_len = c.max_context_len;
  for (const int64_t window : c.layer_windows) {
    if (window > 0) context_len = std::min(context_len, window);
  }
  u32(".context_length", context_len);
  u32(".embedding_length", c.hidden_size);
  u32(".block_count", c.num_layers);
  u32(".feed_forward_length", c.intermediate_size);
  u32(".attention.head_count", c.num_heads);
  u32(".attention.head_count_kv", c.num_kv_heads);
  u32(".attention.key_length", c.head_dim);
  u32(".attention.value_length", c.head_dim);
  u32(".rope.dimension_count", c.head_dim);
  writer.SetF32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  writer.SetF32(arch + ".rope.freq_base", static_cast<float>(c.rope_theta));
  if (c.rope_scaling.type == RopeScalingType::kLinear) {
    writer.SetString(arch + ".rope.scaling.type", "linear");
    writer.SetF32(arch + ".rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
}

int32_t TokenType(const SpmProcessor& spm, int id) {
  if (spm.IsUnknown(id)) return kTokenUnknown;
  if (spm.IsControl(id)) return kTokenControl;
  if (spm.IsByte(id)) return kTokenByte;
  if (spm.IsUnused(id)) return kTokenUnused;
  return kTokenNormal;
}

absl::Status WriteTokenizer(const std::string& model_dir, const ModelConfig& config,
                            GgufWriter& writer) {
  const std::string path = model_dir + "/tokenizer.model";
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::UnimplementedError(
        absl::StrCat(model_dir,
                     ": no tokenizer.model; only SentencePiece tokenizers are exported (llama.cpp "
                     "refuses a GGUF without a tokenizer)"));
  }
  std::string error;
  std::unique_ptr<SpmProcessor> spm = SpmProcessor::Load(path, &error);
  if (spm == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": ", error));
  const int64_t size = spm->size();
  if (size > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", size, " pieces, more than the model's vocab_size ", config.vocab_size));
  }
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(config.vocab_size));
  for (int id = 0; id < size; ++id) {
    tokens.push_back(spm->Piece(id));
    scores.push_back(spm->Score(id));
    types.push_back(TokenType(*spm, id));
  }
  for (int64_t id = size; id < config.vocab_size; ++id) {
    tokens.push_back(absl::StrCat("<unused_", id, ">"));
    scores.push_back(kPlaceholderScore);
    types.push_back(kTokenUnused);
  }
  writer.SetString("tokenizer.ggml.model", "llama");
  writer.SetStringArray("tokenizer.ggml.tokens", tokens);
  writer.SetF32Array("tokenizer.ggml.scores", scores);
  writer.SetI32Array("tokenizer.ggml.token_type", types);
  const int bos = spm->bos_id() >= 0 ? spm->bos_id() : config.bos_token_id;
  const int eos = spm->eos_id() >= 0
                      ? spm->eos_id()
                      : (config.eos_token_ids.empty() ? -1 : config.eos_token_ids[0]);
  if (bos >= 0) writer.SetU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (eos >= 0) writer.SetU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  if (spm->unk_id() >= 0) {
    writer.SetU32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(spm->unk_id()));
  }
  writer.SetBool("tokenizer.ggml.add_bos_token", bos >= 0);
  writer.SetBool("tokenizer.ggml.add_eos_token", false);
  return absl::OkStatus();
}

// Converts `count` elements between float dtypes; memcpy keeps unaligned sources legal.
void ConvertElements(const uint8_t* src, DType from, uint8_t* dst, DType to, uint64_t count) {
  const size_t from_size = DTypeSize(from);
  const size_t to_size = DTypeSize(to);
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t in = 0;
    std::memcpy(&in, src + i * from_size, from_size);
    float value = 0;
    StoreFromFloat(&value, DType::kF32, 0, LoadAsFloat(&in, from, 0));
    uint32_t out = 0;
    StoreFromFloat(&out, to, 0, value);
    std::memcpy(dst + i * to_size, &out, to_size);
  }
}

// Position of an HF tensor in llama.cpp's usual order: embeddings, layers, final norm, head.
int64_t OrderKey(const std::string& hf_name, int64_t num_layers) {
  if (hf_name.rfind("model.embed_tokens.", 0) == 0) return -1;
  if (hf_name.rfind("model.layers.", 0) == 0) {
    return std::atoll(hf_name.c_str() + std::strlen("model.layers."));
  }
  return num_layers;
}

struct PlannedTensor {
  std::string hf_name;
  std::string gguf_name;
  const SafetensorsTensor* tensor;
  DType out_dtype;
  int64_t permute_heads;
  std::optional<QuantType> quant;  // Set: written as these blocks (out_dtype unused).
};

absl::StatusOr<std::vector<PlannedTensor>> PlanTensors(const Checkpoint& checkpoint,
                                                       const ModelConfig& config,
                                                       const std::string& dtype_option,
                                                       const std::optional<GgufQuantPlan>& quant) {
  std::vector<std::string> names = checkpoint.TensorNames();
  std::stable_sort(names.begin(), names.end());
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return OrderKey(a, config.num_layers) < OrderKey(b, config.num_layers);
  });
  std::vector<PlannedTensor> planned;
  for (const std::string& name : names) {
    const std::optional<std::string> gguf_name = GgufNameOfHfTensor(name);
    if (!gguf_name || (config.tie_word_embeddings && name == "lm_head.weight")) {
      LOG(WARNING) << "event=tensor_skipped" << Kv("tensor", name);
      continue;
    }
    const SafetensorsTensor* tensor = checkpoint.Find(name).tensor;
    if (!tensor->dtype) {
      return absl::InvalidArgumentError(absl::StrCat(checkpoint.source(), ": tensor '", name,
                                                     "' has dtype ", tensor->dtype_name,
                                                     ", expected one of F32, F16, BF16"));
    }
    if (tensor->shape.empty() || tensor->shape.size() > kGgufMaxDims) {
      return absl::InvalidArgumentError(
          absl::StrCat(checkpoint.source(), ": tensor '", name, "' must have 1 to 4 dims"));
    }
    DType out = *tensor->dtype;
    if (tensor->shape.size() == 1) {
      out = DType::kF32;  // As llama.cpp's converter: norms and biases stay f32.
    } else if (dtype_option != "keep") {
      ASSIGN_OR_RETURN(out, ParseDType(dtype_option));
    }
    const int64_t heads = QkPermutationHeads(config, name);
    if (heads > 0 && tensor->shape[0] != heads * config.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat(checkpoint.source(), ": tensor '", name,
                                                     "' has ", tensor->shape[0], " rows, expected ",
                                                     heads * config.head_dim, " from config.json"));
    }
    const std::optional<QuantType> quant_type =
        quant ? quant->TypeOf(name, tensor->shape, config.num_layers, config.tie_word_embeddings)
              : std::nullopt;
    planned.push_back({name, *gguf_name, tensor, out, heads, quant_type});
  }
  return planned;
}

uint32_t FileType(const std::vector<PlannedTensor>& planned,
                  const std::optional<GgufQuantPlan>& quant) {
  if (quant) return quant->file_type;
  for (const PlannedTensor& p : planned) {
    if (p.tensor->shape.size() < 2) continue;
    if (p.out_dtype == DType::kBF16) return kFileTypeMostlyBF16;
    if (p.out_dtype == DType::kF16) return kFileTypeMostlyF16;
  }
  return kFileTypeAllF32;
}

// The tensor as f32 rows (permuted as llama.cpp's converter does), then quantized row by row:
// llama.cpp quantizes after permuting, and a block never spans rows, so its files match ours.
absl::StatusOr<std::span<const uint8_t>> QuantizedRows(const PlannedTensor& p,
                                                       std::vector<uint8_t>& scratch) {
  const SafetensorsTensor& t = *p.tensor;
  const uint64_t count = t.num_bytes / DTypeSize(*t.dtype);
  std::vector<uint8_t> f32(count * sizeof(float));
  ConvertElements(t.data, *t.dtype, f32.data(), DType::kF32, count);
  if (p.permute_heads > 0) {
    std::vector<uint8_t> permuted(f32.size());
    PermuteQkRows(f32, permuted, t.shape[0], p.permute_heads, /*to_gguf=*/true);
    f32.swap(permuted);
  }
  ASSIGN_OR_RETURN(const int64_t bytes, QuantizedBytes(*p.quant, static_cast<int64_t>(count)));
  scratch.resize(bytes);
  if (absl::Status status = Quantize(*p.quant, reinterpret_cast<const float*>(f32.data()),
                                     static_cast<int64_t>(count), scratch.data());
      !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", p.hf_name, "' as ", QuantTypeName(*p.quant), ": ", status.message()));
  }
  return std::span<const uint8_t>(scratch);
}

GgufWriter::DataSource MakeSource(const PlannedTensor& p) {
  return [p](std::vector<uint8_t>& scratch) -> absl::StatusOr<std::span<const uint8_t>> {
    const SafetensorsTensor& t = *p.tensor;
    const DType in = *t.dtype;
    if (p.quant) return QuantizedRows(p, scratch);
    if (in == p.out_dtype && p.permute_heads == 0) {
      return std::span<const uint8_t>(t.data, t.num_bytes);  // Straight from the mapping.
    }
    const uint64_t count = t.num_bytes / DTypeSize(in);
    std::vector<uint8_t> converted;
    std::span<const uint8_t> rows(t.data, t.num_bytes);
    if (in != p.out_dtype) {
      converted.resize(count * DTypeSize(p.out_dtype));
      ConvertElements(t.data, in, converted.data(), p.out_dtype, count);
      rows = converted;
    }
    scratch.resize(rows.size());
    if (p.permute_heads > 0) {
      PermuteQkRows(rows, scratch, t.shape[0], p.permute_heads, /*to_gguf=*/true);
    } else {
      std::memcpy(scratch.data(), rows.data(), rows.size());
    }
    return std::span<const uint8_t>(scratch);
  };
}

}  // namespace

absl::Status ConvertHfToGguf(const HfToGgufOptions& options) {
  if (options.dtype != "keep") RETURN_IF_ERROR(ParseDType(options.dtype).status());
  std::optional<GgufQuantPlan> quant;
  if (!options.quant.empty()) {
    ASSIGN_OR_RETURN(quant, ParseGgufQuantPlan(options.quant));
  }
  ASSIGN_OR_RETURN(const ModelConfig config, ModelConfig::Load(options.model_dir));
  // llama.cpp has no Loop architecture and GGUF no names for its gates or passes.
  if (config.is_loop()) {
    return absl::UnimplementedError(
        absl::StrCat(options.model_dir, ": ", config.architecture_name,
                     " has no GGUF form (llama.cpp does not run it); serve the HF folder instead"));
  }
  ASSIGN_OR_RETURN(const std::unique_ptr<Checkpoint> checkpoint,
                   Checkpoint::Open(options.model_dir));
  ASSIGN_OR_RETURN(const std::vector<PlannedTensor> planned,
                   PlanTensors(*checkpoint, config, options.dtype, quant));

  GgufWriter writer;
  writer.SetString("general.architecture", GgufArchitecture(config));
  writer.SetString("general.name",
                   options.name.empty() ? FolderName(options.model_dir) : options.name);
  writer.SetU32("general.file_type", FileType(planned, quant));
  if (quant) writer.SetU32("general.quantization_version", 2);  // ggml's, for these layouts.
  WriteHyperparameters(config, writer);
  RETURN_IF_ERROR(WriteTokenizer(options.model_dir, config, writer));
  if (config.rope_scaling.type == RopeScalingType::kLlama3) {
    // As llama.cpp's converter: per-frequency divisors in a tensor, no scaling keys.
    auto factors = std::make_shared<std::vector<float>>(RopeFreqFactorsOf(config));
    writer.AddTensor(kGgufRopeFreqsTensor, GgmlType::kF32, {static_cast<int64_t>(factors->size())},
                     [factors](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
                       return std::span<const uint8_t>(
                           reinterpret_cast<const uint8_t*>(factors->data()),
                           factors->size() * sizeof(float));
                     });
  }
  for (const PlannedTensor& p : planned) {
    if (p.quant) {
      writer.AddTensor(p.gguf_name, *p.quant, p.tensor->shape, MakeSource(p));
    } else {
      writer.AddTensor(p.gguf_name, GgmlTypeOf(p.out_dtype), p.tensor->shape, MakeSource(p));
    }
  }
  return writer.Write(options.out_path);
}

}  // namespace iquest
