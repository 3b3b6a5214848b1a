#include "model/llama_weights.h"

#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/quant/ggml_quant.h"

namespace iquest {
namespace {

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Resolves tensors by name, checking dtype and shape, and records which names were used.
class Binder {
 public:
  Binder(const Checkpoint& checkpoint, Backend& backend, LlamaWeights& weights)
      : checkpoint_(checkpoint), backend_(backend), weights_(weights) {}

  // A tensor of any float dtype; a matrix (`quantized_ok`: the Gemm weights and the embedding
  // table) may also be quantized, and stays so where the backend reads quantized weights. A
  // quantized tensor elsewhere (a foreign file's Loop gate), or on a backend that does not, is
  // dequantized into an f32 copy that is uploaded (and kept while the backend reads it).
  absl::StatusOr<TensorView> Get(const std::string& name, std::vector<int64_t> shape,
                                 bool quantized_ok = false) {
    const Checkpoint::Entry entry = checkpoint_.Find(name);
    const std::string shown = checkpoint_.NameInFile(name);  // GGUF files use other names.
    if (entry.tensor == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(checkpoint_.source(), ": missing tensor '", shown, "'"));
    }
    used_.insert(name);
    const SafetensorsTensor& tensor = *entry.tensor;
    if (!tensor.dtype) {
      return absl::InvalidArgumentError(absl::StrCat(*entry.file, ": tensor '", shown,
                                                     "' has dtype ", tensor.dtype_name,
                                                     ", expected one of F32, F16, BF16"));
    }
    if (IsQuantized(*tensor.dtype) &&
        (shape.size() != 2 || shape[1] % BlockOf(*tensor.dtype).elements != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          *entry.file, ": tensor '", shown, "' is ", std::string(DTypeName(*tensor.dtype)),
          ", which only 2-D tensors whose rows are whole blocks of ",
          BlockOf(*tensor.dtype).elements, " may be"));
    }
    if (tensor.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          *entry.file, ": tensor '", shown, "' has shape [", absl::StrJoin(tensor.shape, ", "),
          "], expected [", absl::StrJoin(shape, ", "), "] from the model config"));
    }
    const uint8_t* data = tensor.data;
    DType dtype = *tensor.dtype;
    std::vector<uint8_t> f32;  // The dequantized copy, when one is needed.
    if (IsQuantized(dtype) && (!quantized_ok || !backend_.ReadsQuantizedWeights())) {
      f32.resize(Numel(shape) * sizeof(float));
      Dequantize(*QuantTypeOf(dtype), data, Numel(shape), reinterpret_cast<float*>(f32.data()));
      data = f32.data();
      dtype = DType::kF32;
    }
    // Quantized blocks are read byte-wise (their f16 scales through memcpy): any address does.
    const size_t alignment = IsQuantized(dtype) ? 1 : DTypeSize(dtype);
    const size_t num_bytes = f32.empty() ? tensor.num_bytes : f32.size();
    if (reinterpret_cast<uintptr_t>(data) % alignment != 0) {
      ASSIGN_OR_RETURN(auto copy, backend_.Allocate(num_bytes));
      std::memcpy(copy->data(), data, num_bytes);
      data = static_cast<const uint8_t*>(copy->data());
      weights_.aligned_copies.push_back(std::move(copy));
    }
    // The view is read-only in practice; TensorView has no const flavour.
    TensorView host(const_cast<uint8_t*>(data), dtype, shape.data(),
                    static_cast<int>(shape.size()));
    ASSIGN_OR_RETURN(const TensorView uploaded, backend_.UploadWeight(host));
    // The backend copied the dequantized values (a GPU) or reads them where they are.
    if (!f32.empty() && uploaded.data() == f32.data()) {
      weights_.dequantized.push_back(std::move(f32));
    }
    // Copied (to a GPU, or to align it): the mapping's pages are not read again.
    if (uploaded.data() != tensor.data) checkpoint_.DropMappedPages(tensor.data, tensor.num_bytes);
    return uploaded;
  }

  absl::StatusOr<TensorView> GetMatrix(const std::string& name, std::vector<int64_t> shape) {
    return Get(name, std::move(shape), /*quantized_ok=*/true);
  }

  absl::StatusOr<TensorView> GetOptional(bool wanted, const std::string& name,
                                         std::vector<int64_t> shape) {
    if (!wanted) return TensorView();
    return Get(name, std::move(shape));
  }

  std::vector<std::string> Unused() const {
    std::vector<std::string> unused;
    for (const std::string& name : checkpoint_.TensorNames()) {
      if (used_.count(name) == 0) unused.push_back(name);
    }
    return unused;
  }

 private:
  const Checkpoint& checkpoint_;
  Backend& backend_;
  LlamaWeights& weights_;
  std::set<std::string> used_;
};

absl::StatusOr<LayerWeights> BindLayer(Binder& binder, const ModelConfig& c, int64_t layer) {
  const std::string p = absl::StrCat("model.layers.", layer, ".");
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  LayerWeights w;
  ASSIGN_OR_RETURN(w.input_norm, binder.Get(p + "input_layernorm.weight", {c.hidden_size}));
  ASSIGN_OR_RETURN(w.q_proj,
                   binder.GetMatrix(p + "self_attn.q_proj.weight", {q_out, c.hidden_size}));
  ASSIGN_OR_RETURN(w.k_proj,
                   binder.GetMatrix(p + "self_attn.k_proj.weight", {kv_out, c.hidden_size}));
  ASSIGN_OR_RETURN(w.v_proj,
                   binder.GetMatrix(p + "self_attn.v_proj.weight", {kv_out, c.hidden_size}));
  ASSIGN_OR_RETURN(w.o_proj,
                   binder.GetMatrix(p + "self_attn.o_proj.weight", {c.hidden_size, q_out}));
  ASSIGN_OR_RETURN(w.q_bias, binder.GetOptional(c.qkv_bias, p + "self_attn.q_proj.bias", {q_out}));
  ASSIGN_OR_RETURN(w.k_bias, binder.GetOptional(c.qkv_bias, p + "self_attn.k_proj.bias", {kv_out}));
  ASSIGN_OR_RETURN(w.v_bias, binder.GetOptional(c.qkv_bias, p + "self_attn.v_proj.bias", {kv_out}));
  ASSIGN_OR_RETURN(w.o_bias,
                   binder.GetOptional(c.o_bias, p + "self_attn.o_proj.bias", {c.hidden_size}));
  ASSIGN_OR_RETURN(w.post_norm, binder.Get(p + "post_attention_layernorm.weight", {c.hidden_size}));
  const int64_t inter = c.intermediate_size;
  ASSIGN_OR_RETURN(w.gate_proj,
                   binder.GetMatrix(p + "mlp.gate_proj.weight", {inter, c.hidden_size}));
  ASSIGN_OR_RETURN(w.up_proj, binder.GetMatrix(p + "mlp.up_proj.weight", {inter, c.hidden_size}));
  ASSIGN_OR_RETURN(w.down_proj,
                   binder.GetMatrix(p + "mlp.down_proj.weight", {c.hidden_size, inter}));
  ASSIGN_OR_RETURN(w.gate_bias, binder.GetOptional(c.mlp_bias, p + "mlp.gate_proj.bias", {inter}));
  ASSIGN_OR_RETURN(w.up_bias, binder.GetOptional(c.mlp_bias, p + "mlp.up_proj.bias", {inter}));
  ASSIGN_OR_RETURN(w.down_bias,
                   binder.GetOptional(c.mlp_bias, p + "mlp.down_proj.bias", {c.hidden_size}));
  // The Loop gates live outside the layers in the published checkpoint.
  const std::string gate = absl::StrCat("model.gate_projections.", layer, ".");
  const bool loop = c.is_loop() && c.loop_num > 1;
  ASSIGN_OR_RETURN(w.loop_gate_weight,
                   binder.GetOptional(loop, gate + "weight", {c.num_heads, c.head_dim}));
  ASSIGN_OR_RETURN(w.loop_gate_bias, binder.GetOptional(loop, gate + "bias", {c.num_heads}));
  return w;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaWeights>> LlamaWeights::Bind(const Checkpoint& checkpoint,
                                                                 const ModelConfig& config,
                                                                 Backend& backend) {
  auto weights = std::make_unique<LlamaWeights>();
  Binder binder(checkpoint, backend, *weights);
  ASSIGN_OR_RETURN(
      weights->embed_tokens,
      binder.GetMatrix("model.embed_tokens.weight", {config.vocab_size, config.hidden_size}));
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    ASSIGN_OR_RETURN(LayerWeights layer_weights, BindLayer(binder, config, layer));
    weights->layers.push_back(layer_weights);
  }
  ASSIGN_OR_RETURN(weights->final_norm, binder.Get("model.norm.weight", {config.hidden_size}));
  if (config.tie_word_embeddings) {
    weights->lm_head = weights->embed_tokens;  // A stored lm_head.weight, if any, is ignored.
  } else {
    ASSIGN_OR_RETURN(weights->lm_head,
                     binder.GetMatrix("lm_head.weight", {config.vocab_size, config.hidden_size}));
  }
  const std::vector<std::string> unused = binder.Unused();
  if (!unused.empty()) {
    LOG(WARNING) << "event=unused_tensors" << Kv("count", unused.size())
                 << Kv("first", unused.front());
  }
  return weights;
}

absl::StatusOr<std::unique_ptr<LlamaWeights>> LlamaWeights::Random(const ModelConfig& c,
                                                                   DType dtype, uint64_t seed,
                                                                   Backend& backend) {
  auto weights = std::make_unique<LlamaWeights>();
  uint64_t next_seed = seed;
  // Norm weights near 1 would need an offset FillRandom lacks; uniform in +-1 keeps activations
  // finite, which is all a speed benchmark needs.
  auto make = [&](std::initializer_list<int64_t> shape, float scale) -> absl::StatusOr<TensorView> {
    const DType type = shape.size() == 1 ? DType::kF32 : dtype;
    const TensorView probe(nullptr, type, shape);
    ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> buffer, backend.Allocate(probe.num_bytes()));
    const TensorView view(buffer->data(), type, shape);
    backend.FillRandom(view, next_seed++, scale);
    weights->aligned_copies.push_back(std::move(buffer));
    return view;
  };
  auto optional = [&](bool present, int64_t n) -> absl::StatusOr<TensorView> {
    if (!present) return TensorView();
    return make({n}, 0.02f);
  };
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  const int64_t h = c.hidden_size;
  const int64_t inter = c.intermediate_size;
  ASSIGN_OR_RETURN(weights->embed_tokens, make({c.vocab_size, h}, 1.0f));
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    LayerWeights w;
    ASSIGN_OR_RETURN(w.input_norm, make({h}, 1.0f));
    ASSIGN_OR_RETURN(w.q_proj, make({q_out, h}, 0.02f));
    ASSIGN_OR_RETURN(w.k_proj, make({kv_out, h}, 0.02f));
    ASSIGN_OR_RETURN(w.v_proj, make({kv_out, h}, 0.02f));
    ASSIGN_OR_RETURN(w.o_proj, make({h, q_out}, 0.02f));
    ASSIGN_OR_RETURN(w.q_bias, optional(c.qkv_bias, q_out));
    ASSIGN_OR_RETURN(w.k_bias, optional(c.qkv_bias, kv_out));
    ASSIGN_OR_RETURN(w.v_bias, optional(c.qkv_bias, kv_out));
    ASSIGN_OR_RETURN(w.o_bias, optional(c.o_bias, h));
    ASSIGN_OR_RETURN(w.post_norm, make({h}, 1.0f));
    ASSIGN_OR_RETURN(w.gate_proj, make({inter, h}, 0.02f));
    ASSIGN_OR_RETURN(w.up_proj, make({inter, h}, 0.02f));
    ASSIGN_OR_RETURN(w.down_proj, make({h, inter}, 0.02f));
    ASSIGN_OR_RETURN(w.gate_bias, optional(c.mlp_bias, inter));
    ASSIGN_OR_RETURN(w.up_bias, optional(c.mlp_bias, inter));
    ASSIGN_OR_RETURN(w.down_bias, optional(c.mlp_bias, h));
    if (c.is_loop() && c.loop_num > 1) {
      ASSIGN_OR_RETURN(w.loop_gate_weight, make({c.num_heads, c.head_dim}, 0.02f));
      ASSIGN_OR_RETURN(w.loop_gate_bias, make({c.num_heads}, 1.0f));
    }
    weights->layers.push_back(w);
  }
  ASSIGN_OR_RETURN(weights->final_norm, make({h}, 1.0f));
  if (c.tie_word_embeddings) {
    weights->lm_head = weights->embed_tokens;
  } else {
    ASSIGN_OR_RETURN(weights->lm_head, make({c.vocab_size, h}, 0.02f));
  }
  return weights;
}

}  // namespace iquest
