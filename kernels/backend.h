// Backend: the only interface the model sees. One implementation per device; CpuBackend is the
// reference every other backend is tested against.
//
// Conventions: all tensors are dense row-major TensorViews in the backend's memory. Activations
// are f32, except the GEMM inputs that RmsNorm and SiluMul may write in gemm_input_dtype();
// weights may be f32, f16 or bf16, and where ReadsQuantizedWeights() Gemm's `w` and Embed's
// `table` may also be in a quantized dtype (GGUF's blocks, kernels/quant/ggml_quant.h: rows of
// whole blocks, read as the format dequantizes them). "T" is the number of tokens in the flat batch
// (prefill chunks and decodes together).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "kernels/kv_layout.h"

namespace iquest {

// Memory owned by a backend; freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer(void* data, size_t num_bytes, std::function<void(void*)> free)
      : data_(data), num_bytes_(num_bytes), free_(std::move(free)) {}
  ~DeviceBuffer() {
    if (data_ != nullptr) free_(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t num_bytes() const { return num_bytes_; }

 private:
  void* data_;
  size_t num_bytes_;
  std::function<void(void*)> free_;
};

// Per-sequence description of a flat attention batch. Sequence s owns query rows
// [query_start_loc[s], query_start_loc[s + 1]); those are the LAST tokens of its context of
// seq_lens[s] tokens, so query row i of s sits at position p = seq_lens[s] - num_queries(s) + i
// and attends causally to context positions 0..p (with a sliding window W: max(0, p - W + 1)..p,
// the W most recent, itself included, as HF's Mistral mask and vLLM's window count). Their K/V
// are already in the cache; block table entries of blocks wholly before every row's window are
// never read (they may name no block).
struct AttentionArgs {
  TensorView query_start_loc;  // i32 [num_seqs + 1], query_start_loc[0] == 0
  TensorView seq_lens;         // i32 [num_seqs]
  TensorView block_tables;     // i32 [num_seqs, max_blocks_per_seq]: logical -> physical block
  float scale = 1.0f;          // Softmax scale, usually 1 / sqrt(head_dim).
  int64_t window = 0;          // Sliding-window length in tokens; 0 = none (full causal).
  // Host-side bounds of this batch, for backends whose launch grids need them without reading
  // device memory back: the most query rows of one sequence and the longest context. -1 =
  // unknown (a GPU backend then reads them back, at the cost of a synchronization).
  int64_t max_query_len = -1;
  int64_t max_seq_len = -1;
};

// The first context position a query at `pos` sees under `args`' window.
inline int64_t WindowStart(const AttentionArgs& args, int64_t pos) {
  return args.window > 0 ? std::max<int64_t>(0, pos - args.window + 1) : 0;
}

// A captured sequence of device work that replays as one launch (a CUDA graph). It reads and
// writes exactly the memory its ops named at capture time, so the caller keeps those buffers
// (and their addresses) alive and refills them before each Replay.
// One row for Backend::SampleTokens: which row of the logits, and how to draw from it.
struct SampleRow {
  int64_t logits_row = 0;    // Row of `logits`.
  float temperature = 0.0f;  // <= 0: greedy (the first maximum).
  int32_t top_k = 0;         // 0: off.
  float top_p = 1.0f;        // 1: off.
  float min_p = 0.0f;        // 0: off.
  double uniform = 0.0;      // The draw's random number, in [0, 1).
};

// What comes back to the host for a row sampled on the backend: 8 bytes, not the row.
struct SampledId {
  int32_t token = 0;
  float logprob = 0.0f;  // Of `token`, under log_softmax of the raw logits row.
};

class StepGraph {
 public:
  virtual ~StepGraph() = default;
  virtual void Replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // --- Memory ---
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) = 0;
  virtual void CopyToDevice(const void* host, void* device, size_t num_bytes) = 0;
  virtual void CopyToHost(const void* device, void* host, size_t num_bytes) = 0;
  // Makes host weights usable by this backend. The CPU returns `host` as it is (zero copy from
  // the mmap); a GPU backend uploads and keeps the copy alive as long as the backend.
  virtual absl::StatusOr<TensorView> UploadWeight(TensorView host) = 0;
  // Tells the backend that `w` (an uploaded weight) will be the `w` of Gemm calls, so that it
  // may prepare it once (the fast CPU backend repacks it into panels). Gemm must still accept
  // any weight; an unprepared one may just be slower.
  virtual void PrepareGemmWeight(TensorView w) { (void)w; }
  // True when the backend holds its own copy of the (prepared) weight `w` and its Gemm reads no
  // more of w than a fingerprint, so the host pages behind w may be dropped (if read again they
  // must still hold the same bytes: only clean file pages are dropped).
  virtual bool HoldsCopyOf(TensorView w) const {
    (void)w;
    return false;
  }

  // Whether Gemm's `w` and Embed's `table` may be quantized (GGUF blocks) on this backend. One
  // that does not (CUDA, until its GEMMs read blocks) is given such weights dequantized.
  virtual bool ReadsQuantizedWeights() const { return false; }

  // t[i] = RandomUniform(seed, i, scale) (kernels/random_fill.h) rounded to t's dtype: random
  // weights made where they live (a 40B-shaped model is too big to carry to a GPU machine).
  // This default fills host chunks and copies them; a GPU backend fills on the device.
  virtual void FillRandom(TensorView t, uint64_t seed, float scale);

  // --- Ops ---
  // out[t, :] = table[token_ids[t], :]
  //   token_ids: i32 [T]; table: [vocab, hidden]; out: f32 [T, hidden]
  virtual void Embed(TensorView token_ids, TensorView table, TensorView out) = 0;

  // out[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n])
  //   a: [M, K] f32 or gemm_input_dtype(); w: [N, K] (HF Linear layout); bias: [N] or empty;
  //   out: f32 [M, N]
  virtual void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) = 0;

  // With `residual` empty: out = rmsnorm(x) * weight.
  // Otherwise the fused pre-norm step: residual += x; out = rmsnorm(residual) * weight.
  //   x: f32 [T, H]; residual: f32 [T, H] or empty; weight: [H];
  //   out: [T, H] f32 (may alias x) or gemm_input_dtype() (rounded once, aliases nothing)
  virtual void RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
                       TensorView out) = 0;

  // Rotate-half (HF/NeoX) RoPE in place: pairs (d, d + head_dim/2) turn by positions[t] *
  // inv_freq[d].
  //   q: f32 [T, num_heads, head_dim]; k: f32 [T, num_kv_heads, head_dim];
  //   positions: i32 [T]; inv_freq: f32 [head_dim / 2]
  virtual void Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) = 0;

  // out = silu(gate) * up
  //   gate, up: f32 [T, intermediate];
  //   out: [T, intermediate] f32 (may alias gate or up) or gemm_input_dtype() (aliases nothing)
  virtual void SiluMul(TensorView gate, TensorView up, TensorView out) = 0;

  // Stores token t's K and V at slot slot_mapping[t] of the paged cache; a token whose slot is
  // kPaddingSlot is not stored (the padding rows of a fixed-shape graph step).
  //   k, v: f32 [T, num_kv_heads, head_dim]; slot_mapping: i32 [T]
  virtual void WriteKv(TensorView k, TensorView v, TensorView slot_mapping,
                       const PagedKvView& kv) = 0;

  // Rope of q and k, then k and v stored in the cache: the model's sequence. A backend may fuse
  // the two (the CUDA backend does it in one pass); this default calls Rope, then WriteKv.
  virtual void RopeWriteKv(TensorView q, TensorView k, TensorView v, TensorView positions,
                           TensorView inv_freq, TensorView slot_mapping, const PagedKvView& kv) {
    Rope(q, k, positions, inv_freq);
    WriteKv(k, v, slot_mapping, kv);
  }

  // Copy-on-write of whole blocks: block pairs[i][1] becomes a copy of block pairs[i][0], in both
  // the K and the V pool.
  //   pairs: i32 [num_copies, 2] = (src_block, dst_block)
  virtual void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) = 0;

  // Causal attention of a flat batch mixing prefill chunks and decodes over the paged cache;
  // GQA: query head h reads KV head h / (num_heads / num_kv_heads).
  //   q: f32 [T, num_heads, head_dim]; out: f32 [T, num_heads, head_dim]
  virtual void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                              TensorView out) = 0;

  // The Loop model's two-branch mix (model/llama.h): per query head a gate from the post-RoPE
  // query, g = sigmoid(q[t, h, :] . gate_weight[h, :] + gate_bias[h]), weighs the global
  // branch: out[t, h, :] = g * global[t, h, :] + (1 - g) * local[t, h, :].
  //   q, global, local: f32 [T, num_heads, head_dim]; gate_weight: [num_heads, head_dim];
  //   gate_bias: [num_heads] (weights, any float dtype); out: f32 [T, num_heads, head_dim]
  //   (may alias global or local)
  virtual void GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                                 TensorView global, TensorView local, TensorView out) = 0;

  // out[t] = argmax_v logits[t, v], the lowest index on ties.
  //   logits: f32 [T, vocab]; out: i32 [T]
  virtual void Argmax(TensorView logits, TensorView out) = 0;

  // Samples rows where the logits are: out[i] is the token drawn for rows[i] (a row may be listed
  // more than once, e.g. for the n samples of a forking prompt) and its logprob, on the host when
  // this returns. The CPU backends draw by kernels/cpu/sampling.h's rule, the CUDA backend by
  // kernels/cpu/sampling_reference.h's (greedy is the first maximum on both).
  //   logits: f32 [N, vocab]; rows: [R] (host); out: [R] (host)
  virtual void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                            std::span<SampledId> out) = 0;

  // The element type in which Gemm's `a` costs least, and in which RmsNorm and SiluMul may
  // write their `out` (the residual stream stays f32). f32 on the CPU; on a GPU the 16-bit type
  // its tensor cores read, so that a normed hidden state is rounded once, in the norm, instead
  // of again by each GEMM reading it (q, k, v; gate, up). Gemm accepts f32 `a` either way.
  virtual DType gemm_input_dtype() const { return DType::kF32; }

  // The KV cache element type this backend serves best: f32 on the CPU (exact, and memory is
  // plentiful), bf16 on a GPU (half the bytes that decode attention streams).
  virtual DType preferred_kv_dtype() const { return DType::kF32; }

  // --- Graphs (optional): ops issued between BeginCapture and EndCapture are recorded, not run,
  // and EndCapture returns them as one StepGraph. Only for backends that report
  // SupportsGraphs(); no host reads (CopyToHost, Synchronize) may happen in between.
  virtual bool SupportsGraphs() const { return false; }
  virtual void BeginCapture() {}
  virtual std::unique_ptr<StepGraph> EndCapture() { return nullptr; }
  // Changes whenever the backend reallocates internal scratch memory that ops use: graphs
  // captured before then point at freed memory and must be captured again.
  virtual uint64_t scratch_epoch() const { return 0; }

  // Waits for queued work (a no-op on the CPU).
  virtual void Synchronize() {}
};

struct BackendOptions {
  // CPU: worker threads of the backend's pool, counting the engine thread; 0 = every CPU this
  // process may use.
  int64_t num_threads = 0;
  // CPU: "auto" (the best ISA CPUID reports), "avx2", "avx512", "avx512-bf16", or "reference"
  // (the single-threaded reference ops).
  std::string cpu_kernels = "auto";
  // CUDA: the GEMM: "auto" (wgmma on sm_90a, else mma.sync), "mma" (mma.sync on any sm_80+),
  // "simt" (plain FMA), or "cublas" (cuBLAS through dlopen, for comparison only).
  std::string gemm = "auto";
};

}  // namespace iquest
