// Launchers of the hand-written CUDA kernels: plain C++ over raw device pointers, with no abseil,
// gRPC or gtest, so that scripts/gpu-check.sh can build them (and tools/gpu_check) with nvcc alone
// on a GPU machine that has only the CUDA toolkit. CudaBackend (cuda_backend.h) puts them behind
// the Backend interface. Every launcher queues work on `stream` and returns at once; every
// pointer is device memory unless its comment says "host".
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "kernels/kv_layout.h"

namespace iquest::cuda {

// ---------------------------------------------------------------------------------------------
// GEMM (gemm.cu; the sm_90a wgmma + TMA kernel in gemm_sm90.cu, the SIMT one in gemm_simt.cu)
// out[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n]): a and w 16-bit (both `dtype`), f32 accumulate.
struct GemmArgs {
  const void* a = nullptr;      // [m, k] dtype, row-major
  const void* w = nullptr;      // [n, k] dtype, row-major (HF Linear layout)
  const float* bias = nullptr;  // [n] f32, or null
  float* out = nullptr;         // [m, n] f32
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  DType dtype = DType::kBF16;  // kBF16 or kF16
  // Split-K partial sums, [splits, m, n] f32; a path that would split K uses at most
  // workspace_bytes of it (none: no split).
  float* workspace = nullptr;
  size_t workspace_bytes = 0;
};

enum class GemmPath {
  kAuto,     // the best of the paths below for this device and shape
  kSimt,     // plain FMA, any shape and alignment (the fallback, and a second reference)
  kMmaSync,  // mma.sync + ldmatrix + cp.async pipeline (sm_80+); needs k % 8 == 0
  kWgmma,    // wgmma + TMA (sm_90a); see Sm90GemmSupports
};
const char* GemmPathName(GemmPath path);

// Runs `path`; kAuto picks wgmma where Sm90GemmAvailable and Sm90GemmSupports hold, else
// mma.sync where k % 8 == 0 and the pointers are 16-byte aligned, else SIMT. An explicit path
// must be able to run the shape (CHECK).
void Gemm(const GemmArgs& args, GemmPath path, cudaStream_t stream);

// The workspace the split-K decode path may use for an [m, n] output: enough for every shape
// of a model with these dimensions.
size_t GemmWorkspaceBytes(int64_t max_m, int64_t max_n);

// out[m, n] = sum over s of partial[s, m, n], added in split order (deterministic), + bias[n]
// (bias may be null): the last step of both GEMM kernels' split-K.
void SplitKReduce(const float* partial, int splits, int64_t m, int64_t n, const float* bias,
                  float* out, cudaStream_t stream);

// wgmma + TMA (gemm_sm90.cu). Available: compiled for sm_90a and `device` is compute 9.0.
bool Sm90GemmAvailable(int device);
// Shape and alignment rules of that kernel (e.g. k a multiple of its K tile).
bool Sm90GemmSupports(const GemmArgs& args);
void GemmSm90(const GemmArgs& args, cudaStream_t stream);

// The SIMT kernel (gemm_simt.cu) with `a` of args.dtype: any shape and alignment.
void GemmSimt(const GemmArgs& args, cudaStream_t stream);

// The SIMT kernel with f32 activations `a_f32` ([m, k]; args.a is ignored) and weights of any
// float type (args.dtype may be kF32): for weights that are not 16-bit and for shapes the tensor
// core kernels cannot take.
void GemmF32Activations(const GemmArgs& args, const float* a_f32, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Element-wise and small ops (elementwise.cu, embed.cu, norm.cu, rope_kv.cu, argmax.cu)

// data[i] = RandomUniform(seed, i, scale) (kernels/random_fill.h) in `dtype` (any float type).
void FillRandom(void* data, DType dtype, int64_t count, uint64_t seed, float scale,
                cudaStream_t stream);

// out[i] = round_to(dtype, in[i]); dtype kBF16 or kF16.
void ConvertFromF32(const float* in, void* out, DType dtype, int64_t count, cudaStream_t stream);

// out[t, :] = table[ids[t], :] widened to f32.
//   ids: i32 [num_tokens]; table: [num_rows, width] of table_dtype (any float); out: f32
void Embed(const int32_t* ids, int64_t num_tokens, const void* table, DType table_dtype,
           int64_t width, float* out, cudaStream_t stream);

// residual == null: out = rmsnorm(x) * weight. Otherwise residual += x; out = rmsnorm(residual) *
// weight. Row sums in f32; out is rounded once (nearest even) when 16-bit.
//   x, residual: f32 [num_tokens, hidden]; weight: [hidden] weight_dtype;
//   out: [num_tokens, hidden] out_dtype (any float type; may alias x only when f32)
void RmsNorm(const float* x, float* residual, const void* weight, DType weight_dtype, float eps,
             int64_t num_tokens, int64_t hidden, void* out, DType out_dtype, cudaStream_t stream);

// out[m, n] += bias[n].  out: f32 [m, n]; bias: f32 [n]
void AddBias(float* out, const float* bias, int64_t m, int64_t n, cudaStream_t stream);

// out = silu(gate) * up, elementwise over `count`: gate, up f32; out of out_dtype (any float
// type, rounded once when 16-bit; may alias gate or up only when f32).
void SiluMul(const float* gate, const float* up, void* out, DType out_dtype, int64_t count,
             cudaStream_t stream);

// The Loop model's mix (Backend::GatedAttentionMix): out = g * global + (1 - g) * local per
// (token, head), g = sigmoid(q . gate_weight[head] + gate_bias[head]). gate_weight
// [num_heads, head_dim] and gate_bias [num_heads] are f32, bf16 or f16; out may alias global or
// local.
struct GatedMixArgs {
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim]
  const void* gate_weight = nullptr;
  const void* gate_bias = nullptr;
  DType weight_dtype = DType::kF32;
  DType bias_dtype = DType::kF32;
  const float* global = nullptr;  // [num_tokens, num_heads, head_dim]
  const float* local = nullptr;   // [num_tokens, num_heads, head_dim]
  float* out = nullptr;           // [num_tokens, num_heads, head_dim]
  int64_t num_tokens = 0;
  int num_heads = 0;
  int head_dim = 0;
};
void GatedAttentionMix(const GatedMixArgs& args, cudaStream_t stream);

struct RopeKvArgs {
  float* q = nullptr;                     // [num_tokens, num_heads, head_dim], rotated in place
  float* k = nullptr;                     // [num_tokens, num_kv_heads, head_dim], rotated in place
  const float* v = nullptr;               // [num_tokens, num_kv_heads, head_dim]
  const int32_t* positions = nullptr;     // [num_tokens]
  const float* inv_freq = nullptr;        // [head_dim / 2]
  const int32_t* slot_mapping = nullptr;  // [num_tokens]; slot < 0: the token is not stored
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};
// Rotate-half RoPE of q and k (skipped when inv_freq is null), then, when slot_mapping is not
// null, k and v stored at their slots of the paged cache `kv` (in kv.dtype): one pass.
void RopeWriteKv(const RopeKvArgs& args, const PagedKvView& kv, cudaStream_t stream);

// Block pairs[i][1] becomes a copy of block pairs[i][0], in the K and the V pool.
//   pairs: i32 [num_pairs, 2]
void CopyKvBlocks(const int32_t* pairs, int64_t num_pairs, const PagedKvView& kv,
                  cudaStream_t stream);

// out[t] = argmax_v logits[t, v], the lowest index on ties (NaN never wins).
//   logits: f32 [num_rows, vocab]; out: i32 [num_rows]
void Argmax(const float* logits, int64_t num_rows, int64_t vocab, int32_t* out,
            cudaStream_t stream);

// out[r] = logits[r, tokens[r]] - log(sum_v exp(logits[r, v])): the token's logprob.
//   logits: f32 [num_rows, vocab]; tokens: i32 [num_rows]; out: f32 [num_rows]
void TokenLogprobs(const float* logits, int64_t num_rows, int64_t vocab, const int32_t* tokens,
                   float* out, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Sampling on the device (sampling.cu)
struct SamplingRowParams {
  float temperature = 1.0f;  // > 0 (greedy rows use Argmax)
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // in (0, 1]; 1 = off
  float min_p = 0.0f;        // in [0, 1); 0 = off
  float uniform = 0.0f;      // the row's random draw in [0, 1), made by the caller
};
// Samples one token per row from softmax(logits / temperature), restricted to the tokens that
// survive top-k, then top-p, then min-p (each relative to the survivors of the previous filter,
// as the host sampler does); ties at a threshold keep every tied token. The draw `uniform`
// selects the token by walking the survivors in index order, so the result is a deterministic
// function of (logits, params). kernels/cpu/sampling_reference.cc holds the same function.
//   logits: f32 [num_rows, vocab]; params: [num_rows]; out: i32 [num_rows]
//   workspace: SamplingWorkspaceBytes(num_rows, vocab) bytes
void SampleTokens(const float* logits, const SamplingRowParams* params, int64_t num_rows,
                  int64_t vocab, int32_t* out, void* workspace, cudaStream_t stream);
size_t SamplingWorkspaceBytes(int64_t num_rows, int64_t vocab);

// ---------------------------------------------------------------------------------------------
// Paged attention (attention.cu)
struct PagedAttentionArgs {
  const float* q = nullptr;                  // [num_tokens, num_heads, head_dim] f32
  float* out = nullptr;                      // [num_tokens, num_heads, head_dim] f32
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;         // [num_seqs]
  const int32_t* block_tables = nullptr;     // [num_seqs, max_blocks_per_seq]
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t num_heads = 0;
  int64_t max_blocks_per_seq = 0;
  // Host-side bounds for the launch grid: the longest query run and context of this batch.
  int64_t max_query_len = 0;
  int64_t max_seq_len = 0;
  float scale = 1.0f;
  int64_t window = 0;  // Sliding window in tokens (0: full causal), as AttentionArgs::window.
  // Flash-decoding partials (split along the context); see PagedAttentionWorkspaceBytes.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
// Semantics of Backend::PagedAttention (kernels/backend.h): a flat batch mixing prefill chunks
// and decodes, causal, GQA (query head h reads KV head h / (num_heads / num_kv_heads)).
void PagedAttention(const PagedAttentionArgs& args, const PagedKvView& kv, cudaStream_t stream);
size_t PagedAttentionWorkspaceBytes(int64_t max_num_tokens, int64_t num_heads, int64_t head_dim,
                                    int64_t max_seq_len);

}  // namespace iquest::cuda
