#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "model/gguf_model.h"
#include "model/model_files.h"

namespace iquest {
namespace {

struct OpenedCheckpoint {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
};

// config.json + safetensors, or a GGUF file whose metadata gives the config.
absl::StatusOr<OpenedCheckpoint> OpenCheckpoint(const std::string& model_path) {
  ASSIGN_OR_RETURN(const ModelFiles files, FindModelFiles(model_path));
  OpenedCheckpoint opened;
  if (files.gguf_path.empty()) {
    ASSIGN_OR_RETURN(opened.config, ModelConfig::Load(files.folder));
    ASSIGN_OR_RETURN(opened.checkpoint, Checkpoint::Open(files.folder));
    return opened;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(files.gguf_path));
  ASSIGN_OR_RETURN(opened.config, ModelConfigFromGguf(*gguf));
  ASSIGN_OR_RETURN(opened.checkpoint, Checkpoint::FromGguf(std::move(gguf), opened.config));
  return opened;
}

}  // namespace

// Buffers for one step. Shapes below use T = tokens in the step, N = logits rows wanted.
struct LlamaModel::Workspace {
  int64_t token_capacity = 0;
  int64_t seq_capacity = 0;
  int64_t block_capacity = 0;
  int64_t logits_capacity = 0;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;

  // Index arrays, i32.
  TensorView token_ids, positions, slot_mapping;  // [T]
  TensorView query_start_loc;                     // [num_seqs + 1]
  TensorView seq_lens;                            // [num_seqs]
  TensorView block_tables;                        // [num_seqs, max_blocks]
  TensorView logits_indices;                      // [N]
  TensorView local_slot_mapping;                  // [T]; Loop models with a local pool
  TensorView local_block_tables;                  // [num_seqs, max_blocks]; the same
  // Activations, f32, except the GEMM inputs x and act: Backend::gemm_input_dtype().
  TensorView residual, x, attn_out, mlp_out;  // [T, hidden]
  TensorView q, attn;                         // [T, num_heads, head_dim]
  TensorView attn_local;                      // [T, num_heads, head_dim]; Loop models only
  TensorView k, v;                            // [T, num_kv_heads, head_dim]
  TensorView gate, up;                        // [T, intermediate]
  TensorView act;                             // [T, intermediate]: silu(gate) * up
  TensorView selected;                        // [N, hidden]
  TensorView logits;                          // [N, vocab]
};

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& model_path,
                                                             Backend& backend) {
  ASSIGN_OR_RETURN(OpenedCheckpoint opened, OpenCheckpoint(model_path));
  std::unique_ptr<LlamaModel> model(new LlamaModel(std::move(opened.config), backend));
  model->checkpoint_ = std::move(opened.checkpoint);
  ASSIGN_OR_RETURN(model->weights_,
                   LlamaWeights::Bind(*model->checkpoint_, model->config_, backend));
  RETURN_IF_ERROR(model->FinishLoading());
  return model;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::CreateRandom(const ModelConfig& config,
                                                                     DType dtype, uint64_t seed,
                                                                     Backend& backend) {
  std::unique_ptr<LlamaModel> model(new LlamaModel(config, backend));
  ASSIGN_OR_RETURN(model->weights_, LlamaWeights::Random(config, dtype, seed, backend));
  RETURN_IF_ERROR(model->FinishLoading());
  return model;
}

void LlamaModel::PrepareGemmWeight(TensorView w) {
  backend_.PrepareGemmWeight(w);
  // Repacked by the backend: the checkpoint's mapped pages of w need not stay resident (one copy
  // of the weights in memory, not the mapping beside the panels).
  if (checkpoint_ != nullptr && backend_.HoldsCopyOf(w)) {
    checkpoint_->DropMappedPages(w.data(), w.num_bytes());
  }
}

absl::Status LlamaModel::FinishLoading() {
  // Every Gemm weight, announced once so that the backend can repack it before the first step.
  for (const LayerWeights& layer : weights_->layers) {
    // (The Loop gates are not Gemm weights: GatedAttentionMix reads them as they are.)
    for (const TensorView* w : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                                &layer.gate_proj, &layer.up_proj, &layer.down_proj}) {
      PrepareGemmWeight(*w);
    }
  }
  PrepareGemmWeight(weights_->lm_head);
  const std::vector<double> inv_freq = RopeInverseFrequencies(config_);
  std::vector<float> inv_freq_f32(inv_freq.begin(), inv_freq.end());
  const size_t bytes = inv_freq_f32.size() * sizeof(float);
  ASSIGN_OR_RETURN(inv_freq_buffer_, backend_.Allocate(bytes));
  backend_.CopyToDevice(inv_freq_f32.data(), inv_freq_buffer_->data(), bytes);
  inv_freq_ = TensorView(inv_freq_buffer_->data(), DType::kF32,
                         {static_cast<int64_t>(inv_freq_f32.size())});
  workspace_ = std::make_shared<Workspace>();
  const ModelConfig& c = config_;
  LOG(INFO) << "event=model_loaded" << Kv("architecture", c.architecture_name)
            << Kv("layers", c.num_layers) << Kv("hidden", c.hidden_size) << Kv("heads", c.num_heads)
            << Kv("kv_heads", c.num_kv_heads) << Kv("head_dim", c.head_dim)
            << Kv("vocab", c.vocab_size) << Kv("loop_num", c.loop_num)
            << Kv("loop_window", c.loop_window) << Kv("backend", backend_.name());
  return absl::OkStatus();
}

absl::Status LlamaModel::EnsureWorkspace(int64_t num_tokens, int64_t num_seqs, int64_t max_blocks,
                                         int64_t num_logits) {
  Workspace& ws = *workspace_;
  if (num_tokens <= ws.token_capacity && num_seqs <= ws.seq_capacity &&
      max_blocks * num_seqs <= ws.block_capacity && num_logits <= ws.logits_capacity) {
    return absl::OkStatus();
  }
  // Grow geometrically so that a slowly growing batch does not reallocate every step.
  const int64_t t = std::max(num_tokens, 2 * ws.token_capacity);
  const int64_t s = std::max(num_seqs, 2 * ws.seq_capacity);
  const int64_t b = std::max(max_blocks * num_seqs, 2 * ws.block_capacity);
  const int64_t n = std::max(num_logits, 2 * ws.logits_capacity);
  const ModelConfig& c = config_;
  ws.buffers.clear();
  auto make = [&](DType dtype, std::initializer_list<int64_t> shape,
                  TensorView& view) -> absl::Status {
    TensorView probe(nullptr, dtype, shape);
    ASSIGN_OR_RETURN(auto buffer, backend_.Allocate(probe.num_bytes()));
    view = TensorView(buffer->data(), dtype, shape);
    ws.buffers.push_back(std::move(buffer));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(make(DType::kI32, {t}, ws.token_ids));
  RETURN_IF_ERROR(make(DType::kI32, {t}, ws.positions));
  RETURN_IF_ERROR(make(DType::kI32, {t}, ws.slot_mapping));
  RETURN_IF_ERROR(make(DType::kI32, {s + 1}, ws.query_start_loc));
  RETURN_IF_ERROR(make(DType::kI32, {s}, ws.seq_lens));
  RETURN_IF_ERROR(make(DType::kI32, {b}, ws.block_tables));
  RETURN_IF_ERROR(make(DType::kI32, {n}, ws.logits_indices));
  if (c.loop_num > 1) {
    RETURN_IF_ERROR(make(DType::kI32, {t}, ws.local_slot_mapping));
    RETURN_IF_ERROR(make(DType::kI32, {b}, ws.local_block_tables));
  }
  for (TensorView* view : {&ws.residual, &ws.attn_out, &ws.mlp_out}) {
    RETURN_IF_ERROR(make(DType::kF32, {t, c.hidden_size}, *view));
  }
  const DType gemm_input = backend_.gemm_input_dtype();
  RETURN_IF_ERROR(make(gemm_input, {t, c.hidden_size}, ws.x));
  RETURN_IF_ERROR(make(DType::kF32, {t, c.num_heads, c.head_dim}, ws.q));
  RETURN_IF_ERROR(make(DType::kF32, {t, c.num_heads, c.head_dim}, ws.attn));
  if (c.loop_num > 1) {
    RETURN_IF_ERROR(make(DType::kF32, {t, c.num_heads, c.head_dim}, ws.attn_local));
  }
  RETURN_IF_ERROR(make(DType::kF32, {t, c.num_kv_heads, c.head_dim}, ws.k));
  RETURN_IF_ERROR(make(DType::kF32, {t, c.num_kv_heads, c.head_dim}, ws.v));
  RETURN_IF_ERROR(make(DType::kF32, {t, c.intermediate_size}, ws.gate));
  RETURN_IF_ERROR(make(DType::kF32, {t, c.intermediate_size}, ws.up));
  // SiluMul runs in place in f32; a 16-bit output would overwrite gate elements not yet read.
  if (gemm_input == DType::kF32) {
    ws.act = ws.gate;
  } else {
    RETURN_IF_ERROR(make(gemm_input, {t, c.intermediate_size}, ws.act));
  }
  RETURN_IF_ERROR(make(DType::kF32, {n, c.hidden_size}, ws.selected));
  RETURN_IF_ERROR(make(DType::kF32, {n, c.vocab_size}, ws.logits));
  ws.token_capacity = t;
  ws.seq_capacity = s;
  ws.block_capacity = b;
  ws.logits_capacity = n;
  return absl::OkStatus();
}

// The workspace cut down to this step's sizes.
struct LlamaModel::StepViews {
  TensorView token_ids, positions, slot_mapping, logits_indices;
  AttentionArgs attention;
  // The local layers' slots and attention (Loop models): a local pool's, or the global ones.
  TensorView local_slot_mapping;
  AttentionArgs local_attention;
  TensorView residual, x, attn_out, mlp_out, q, attn, attn_local, k, v, gate, up, act, selected,
      logits;
};

LlamaModel::StepViews LlamaModel::UploadStep(const BatchInputs& in) {
  Workspace& ws = *workspace_;
  const int64_t t = in.num_tokens();
  const int64_t s = in.num_seqs();
  const int64_t n = static_cast<int64_t>(in.logits_indices.size());
  auto upload = [&](const std::vector<int32_t>& host, TensorView capacity) {
    const TensorView view = capacity.Rows(0, static_cast<int64_t>(host.size()));
    backend_.CopyToDevice(host.data(), view.data(), view.num_bytes());
    return view;
  };
  StepViews step;
  step.token_ids = upload(in.token_ids, ws.token_ids);
  step.positions = upload(in.positions, ws.positions);
  step.slot_mapping = upload(in.slot_mapping, ws.slot_mapping);
  step.logits_indices = upload(in.logits_indices, ws.logits_indices);
  step.attention.query_start_loc = upload(in.query_start_loc, ws.query_start_loc);
  step.attention.seq_lens = upload(in.seq_lens, ws.seq_lens);
  step.attention.block_tables =
      upload(in.block_tables, ws.block_tables).Reshape({s, in.max_blocks_per_seq});
  step.attention.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(config_.head_dim)));
  step.attention.max_query_len = 0;
  step.attention.max_seq_len = 0;
  for (int64_t i = 0; i < s; ++i) {
    step.attention.max_query_len = std::max<int64_t>(
        step.attention.max_query_len, in.query_start_loc[i + 1] - in.query_start_loc[i]);
    step.attention.max_seq_len = std::max<int64_t>(step.attention.max_seq_len, in.seq_lens[i]);
  }
  step.local_slot_mapping = step.slot_mapping;
  step.local_attention = step.attention;
  step.local_attention.window = config_.loop_window;
  if (!in.local_block_tables.empty()) {
    step.local_slot_mapping = upload(in.local_slot_mapping, ws.local_slot_mapping);
    step.local_attention.block_tables =
        upload(in.local_block_tables, ws.local_block_tables).Reshape({s, in.max_blocks_per_seq});
  }
  step.residual = ws.residual.Rows(0, t);
  step.x = ws.x.Rows(0, t);
  step.attn_out = ws.attn_out.Rows(0, t);
  step.mlp_out = ws.mlp_out.Rows(0, t);
  step.q = ws.q.Rows(0, t);
  step.attn = ws.attn.Rows(0, t);
  if (config_.loop_num > 1) step.attn_local = ws.attn_local.Rows(0, t);
  step.k = ws.k.Rows(0, t);
  step.v = ws.v.Rows(0, t);
  step.gate = ws.gate.Rows(0, t);
  step.up = ws.up.Rows(0, t);
  step.act = ws.act.Rows(0, t);
  step.selected = ws.selected.Rows(0, n);
  step.logits = ws.logits.Rows(0, n);
  return step;
}

// One decoder layer in pass `pass` (0 for every model but Loop ones). On entry `mlp_out` holds
// the previous layer's MLP output (for layer 0 of pass 0, `residual` holds the embeddings; for
// layer 0 of a later pass, the last layer's output of the pass before); the pending residual
// add is fused into the input norm.
//
// Pass 0 is the plain Llama layer: its K/V go to KV layer `layer` (global, causal, or the
// config's sliding window). Passes p >= 1 of a Loop model run the same weights on pass p - 1's
// output: q attends to pass 0's K/V of this layer (read only, causal: the global branch A) and
// to its own pass's K/V in KV layer p * num_layers + layer within loop_window tokens (the local
// branch B); the per-head gate mixes them, g * A + (1 - g) * B, before o_proj.
void LlamaModel::RunLayer(int64_t layer, int64_t pass, const StepViews& s, KvCache& cache) {
  const LayerWeights& w = weights_->layers[static_cast<size_t>(layer)];
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const int64_t t = s.x.dim(0);
  const int64_t q_width = config_.num_heads * config_.head_dim;
  const int64_t kv_width = config_.num_kv_heads * config_.head_dim;
  if (layer == 0 && pass == 0) {
    backend_.RmsNorm(s.residual, TensorView(), w.input_norm, eps, s.x);
  } else {
    backend_.RmsNorm(s.mlp_out, s.residual, w.input_norm, eps, s.x);
  }
  // Attention block.
  backend_.Gemm(s.x, w.q_proj, w.q_bias, s.q.Reshape({t, q_width}));
  backend_.Gemm(s.x, w.k_proj, w.k_bias, s.k.Reshape({t, kv_width}));
  backend_.Gemm(s.x, w.v_proj, w.v_bias, s.v.Reshape({t, kv_width}));
  const PagedKvView kv = cache.Layer(layer);
  if (pass == 0) {
    backend_.RopeWriteKv(s.q, s.k, s.v, s.positions, inv_freq_, s.slot_mapping, kv);
    AttentionArgs attention = s.attention;
    attention.window = config_.LayerWindow(layer);
    backend_.PagedAttention(s.q, kv, attention, s.attn);
  } else {
    const PagedKvView local = cache.Layer(pass * config_.num_layers + layer);
    backend_.RopeWriteKv(s.q, s.k, s.v, s.positions, inv_freq_, s.local_slot_mapping, local);
    backend_.PagedAttention(s.q, kv, s.attention, s.attn);
    backend_.PagedAttention(s.q, local, s.local_attention, s.attn_local);
    backend_.GatedAttentionMix(s.q, w.loop_gate_weight, w.loop_gate_bias, s.attn, s.attn_local,
                               s.attn);
  }
  backend_.Gemm(s.attn.Reshape({t, q_width}), w.o_proj, w.o_bias, s.attn_out);
  // MLP block: residual += attn_out; x = norm(residual); mlp_out = down(silu(gate) * up).
  backend_.RmsNorm(s.attn_out, s.residual, w.post_norm, eps, s.x);
  backend_.Gemm(s.x, w.gate_proj, w.gate_bias, s.gate);
  backend_.Gemm(s.x, w.up_proj, w.up_bias, s.up);
  backend_.SiluMul(s.gate, s.up, s.act);
  backend_.Gemm(s.act, w.down_proj, w.down_bias, s.mlp_out);
}

void LlamaModel::RunDeviceSteps(const StepViews& step, KvCache& cache) {
  backend_.Embed(step.token_ids, weights_->embed_tokens, step.residual);
  for (int64_t pass = 0; pass < config_.loop_num; ++pass) {
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) RunLayer(layer, pass, step, cache);
  }
  if (step.logits_indices.dim(0) == 0) return;
  backend_.RmsNorm(step.mlp_out, step.residual, weights_->final_norm,
                   static_cast<float>(config_.rms_norm_eps), step.x);
  // Embed is a row gather: it picks the rows whose logits were asked for (widened to f32 when
  // x is 16-bit: exact, and the LM head rounds them back as exactly).
  backend_.Embed(step.logits_indices, step.x, step.selected);
  backend_.Gemm(step.selected, weights_->lm_head, TensorView(), step.logits);
}

int64_t LlamaModel::num_decode_graphs() const {
  return decode_graphs_ == nullptr ? 0 : decode_graphs_->num_graphs();
}

absl::StatusOr<TensorView> LlamaModel::ForwardDecodeGraph(const BatchInputs& inputs,
                                                          KvCache& cache) {
  if (decode_graphs_ == nullptr) decode_graphs_ = std::make_unique<DecodeGraphs>();
  StepViews step;
  DecodeGraphHooks hooks;
  hooks.ensure_workspace = [&](int64_t t, int64_t s, int64_t b, int64_t n) {
    return EnsureWorkspace(t, s, b, n);
  };
  hooks.upload = [&](const BatchInputs& padded, int64_t max_seq_len) {
    step = UploadStep(padded);
    step.attention.max_query_len = 1;
    step.attention.max_seq_len = max_seq_len;
    return step.logits;
  };
  hooks.run_device = [&] { RunDeviceSteps(step, cache); };
  hooks.workspace_base = [&]() -> const void* { return workspace_->residual.data(); };
  return decode_graphs_->Run(inputs, cache, backend_, hooks);
}

absl::StatusOr<TensorView> LlamaModel::ForwardToDevice(const BatchInputs& inputs, KvCache& cache) {
  RETURN_IF_ERROR(
      ValidateBatchInputs(inputs, config_.vocab_size, cache.num_blocks(), cache.block_size()));
  const bool local_tables =
      !inputs.local_block_tables.empty() || !inputs.local_slot_mapping.empty();
  if (cache.has_local_pool() != local_tables && inputs.num_tokens() > 0) {
    return absl::InvalidArgumentError(
        cache.has_local_pool() ? "this KV cache has a local pool: the batch needs local tables"
                               : "local tables given for a KV cache without a local pool");
  }
  if (local_tables) {
    RETURN_IF_ERROR(ValidateLocalBatchInputs(inputs, cache.num_local_blocks(), cache.block_size(),
                                             config_.loop_window));
  }
  const int64_t num_logits = static_cast<int64_t>(inputs.logits_indices.size());
  // (Decode graphs pad the global arrays only: a step with local tables runs eagerly.)
  if (decode_graphs_enabled_ && backend_.SupportsGraphs() && !local_tables &&
      DecodeGraphs::Accepts(inputs)) {
    return ForwardDecodeGraph(inputs, cache);
  }
  if (inputs.num_tokens() == 0) return TensorView(nullptr, DType::kF32, {0, config_.vocab_size});
  RETURN_IF_ERROR(EnsureWorkspace(inputs.num_tokens(), inputs.num_seqs(), inputs.max_blocks_per_seq,
                                  num_logits));
  const StepViews step = UploadStep(inputs);
  RunDeviceSteps(step, cache);
  return step.logits;
}

absl::Status LlamaModel::Forward(const BatchInputs& inputs, KvCache& cache,
                                 std::vector<float>& logits) {
  ASSIGN_OR_RETURN(const TensorView device_logits, ForwardToDevice(inputs, cache));
  logits.assign(static_cast<size_t>(device_logits.numel()), 0.0f);
  if (logits.empty()) return absl::OkStatus();
  backend_.CopyToHost(device_logits.data(), logits.data(), device_logits.num_bytes());
  backend_.Synchronize();
  return absl::OkStatus();
}

}  // namespace iquest
