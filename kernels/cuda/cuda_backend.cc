#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "kernels/cuda/cublas_gemm.h"
#include "kernels/cuda/cuda_check.h"

namespace iquest::cuda {
namespace {

int32_t* I32(TensorView t) { return t.as<int32_t>(); }
float* F32(TensorView t) { return t.as<float>(); }

absl::StatusOr<GemmPath> ParseGemm(const std::string& name, int device) {
  if (name == "auto" || name == "cublas") return GemmPath::kAuto;
  if (name == "mma") return GemmPath::kMmaSync;
  if (name == "simt") return GemmPath::kSimt;
  if (name == "wgmma") {
    if (!Sm90GemmAvailable(device)) {
      return absl::InvalidArgumentError(
          "--gemm=wgmma needs a compute 9.0 device and a build for sm_90a");
    }
    return GemmPath::kWgmma;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--gemm must be auto, mma, wgmma, simt or cublas, got ", name));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const BackendOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();  // Clear the sticky error of the failed probe.
    return absl::UnavailableError(
        absl::StrCat("--device=cuda: no usable CUDA device (",
                     err != cudaSuccess ? cudaGetErrorString(err) : "none found", ")"));
  }
  const int device = 0;  // CUDA_VISIBLE_DEVICES picks which one this process sees first.
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp props{};
  CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  if (props.major < 8) {
    return absl::FailedPreconditionError(absl::StrCat("--device=cuda: ", props.name, " is compute ",
                                                      props.major, ".", props.minor,
                                                      "; the kernels need 8.0 (Ampere) or newer"));
  }
  absl::StatusOr<GemmPath> gemm = ParseGemm(options.gemm, device);
  if (!gemm.ok()) return gemm.status();
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<CudaBackend> backend(new CudaBackend(
      device, stream, *gemm,
      absl::StrCat("cuda:", props.name, ":sm_", props.major, props.minor, ":gemm=", options.gemm)));
  if (options.gemm == "cublas") {
    absl::StatusOr<std::unique_ptr<CublasGemm>> cublas = CublasGemm::Load(stream);
    if (!cublas.ok()) return cublas.status();
    backend->cublas_ = std::move(*cublas);
  }
  LOG(INFO) << "event=cuda_backend" << Kv("device", props.name)
            << Kv("compute", absl::StrCat(props.major, ".", props.minor))
            << Kv("sms", props.multiProcessorCount) << Kv("memory_mb", props.totalGlobalMem >> 20)
            << Kv("gemm", options.gemm) << Kv("wgmma", Sm90GemmAvailable(device) ? "yes" : "no");
  return backend;
}

CudaBackend::CudaBackend(int device, cudaStream_t stream, GemmPath gemm_path, std::string name)
    : device_(device), stream_(stream), gemm_path_(gemm_path), name_(std::move(name)) {}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  for (void* p : weights_) cudaFree(p);
  for (Scratch* s : {&a16_, &gemm_workspace_, &attention_workspace_, &sampling_}) {
    if (s->data != nullptr) cudaFree(s->data);
  }
  cublas_.reset();
  cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::Allocate(size_t num_bytes) {
  void* data = nullptr;
  const cudaError_t err = cudaMalloc(&data, std::max<size_t>(num_bytes, 1));
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMalloc of ", num_bytes, " bytes: ", cudaGetErrorString(err)));
  }
  return std::make_unique<DeviceBuffer>(data, num_bytes, [](void* p) { cudaFree(p); });
}

void CudaBackend::CopyToDevice(const void* host, void* device, size_t num_bytes) {
  // From pageable memory the call returns once the bytes are staged, so `host` may be reused.
  CUDA_CHECK(cudaMemcpyAsync(device, host, num_bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::CopyToHost(const void* device, void* host, size_t num_bytes) {
  CHECK(!capturing_) << "no host reads during graph capture";
  CUDA_CHECK(cudaMemcpyAsync(host, device, num_bytes, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

absl::StatusOr<TensorView> CudaBackend::UploadWeight(TensorView host) {
  // 1-D weights (norms, biases) become f32: the kernels read them as f32. An f32 matrix is
  // rounded to bf16, the tensor cores' type; a 16-bit one is copied as it is.
  DType dtype = host.dtype();
  if (host.rank() == 1) dtype = DType::kF32;
  if (host.rank() >= 2 && dtype == DType::kF32) dtype = DType::kBF16;
  const int64_t count = host.numel();
  std::vector<uint8_t> converted;
  const void* source = host.data();
  if (dtype != host.dtype()) {
    converted.resize(static_cast<size_t>(count) * DTypeSize(dtype));
    for (int64_t i = 0; i < count; ++i) {
      const float value = LoadAsFloat(host.data(), host.dtype(), i);
      if (dtype == DType::kF32) {
        reinterpret_cast<float*>(converted.data())[i] = value;
      } else {
        reinterpret_cast<uint16_t*>(converted.data())[i] = FloatToBf16(value);
      }
    }
    source = converted.data();
  }
  const size_t num_bytes = static_cast<size_t>(count) * DTypeSize(dtype);
  void* data = nullptr;
  const cudaError_t err = cudaMalloc(&data, std::max<size_t>(num_bytes, 1));
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("uploading a ", host.ShapeString(), " weight: ", cudaGetErrorString(err)));
  }
  weights_.push_back(data);
  if (host.rank() >= 2) (dtype == DType::kF16 ? f16_matrices_ : bf16_matrices_) = true;
  CUDA_CHECK(cudaMemcpy(data, source, num_bytes, cudaMemcpyHostToDevice));
  int64_t shape[kMaxTensorRank];
  for (int i = 0; i < host.rank(); ++i) shape[i] = host.dim(i);
  return TensorView(data, dtype, shape, host.rank());
}

DType CudaBackend::gemm_input_dtype() const {
  if (gemm_path_ == GemmPath::kSimt || (bf16_matrices_ && f16_matrices_)) return DType::kF32;
  return f16_matrices_ ? DType::kF16 : DType::kBF16;
}

void CudaBackend::FillRandom(TensorView t, uint64_t seed, float scale) {
  cuda::FillRandom(t.data(), t.dtype(), t.numel(), seed, scale, stream_);
}

void* CudaBackend::EnsureScratch(Scratch& scratch, size_t num_bytes) {
  if (scratch.num_bytes >= num_bytes) return scratch.data;
  CHECK(!capturing_) << "scratch must not grow during graph capture (" << num_bytes
                     << " bytes wanted, " << scratch.num_bytes << " held); run the step once "
                     << "uncaptured first";
  ++scratch_epoch_;
  const size_t grown = std::max(num_bytes, scratch.num_bytes * 2);
  if (scratch.data != nullptr) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // Queued kernels may still read it.
    CUDA_CHECK(cudaFree(scratch.data));
  }
  CUDA_CHECK(cudaMalloc(&scratch.data, grown));
  scratch.num_bytes = grown;
  return scratch.data;
}

void CudaBackend::Embed(TensorView token_ids, TensorView table, TensorView out) {
  const int64_t num_tokens = token_ids.dim(0);
  const int64_t width = table.dim(1);
  CHECK(out.ShapeIs({num_tokens, width})) << out.ShapeString();
  cuda::Embed(I32(token_ids), num_tokens, table.data(), table.dtype(), width, F32(out), stream_);
}

void CudaBackend::Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) {
  const int64_t m = a.dim(0), k = a.dim(1), n = w.dim(0);
  CHECK_EQ(w.dim(1), k);
  CHECK(out.ShapeIs({m, n})) << out.ShapeString();
  CHECK(bias.empty() || (bias.dtype() == DType::kF32 && bias.ShapeIs({n})))
      << "bias must be f32 [n] (UploadWeight makes it so)";
  GemmArgs args;
  args.w = w.data();
  args.bias = bias.empty() ? nullptr : F32(bias);
  args.out = F32(out);
  args.m = m;
  args.n = n;
  args.k = k;
  args.dtype = w.dtype();
  // A 16-bit `a` (RmsNorm's or SiluMul's gemm_input_dtype out) is read as it is; it must be
  // the weights' type, which gemm_input_dtype guarantees for the matrices it was derived from.
  const bool a_f32 = a.dtype() == DType::kF32;
  CHECK(a_f32 || a.dtype() == w.dtype())
      << "Gemm: a is " << DTypeName(a.dtype()) << " but w is " << DTypeName(w.dtype())
      << "; a 16-bit a must have w's dtype (gemm_input_dtype)";
  if (m == 0 || n == 0) return;
  const bool sixteen_bit = w.dtype() == DType::kBF16 || w.dtype() == DType::kF16;
  if (!sixteen_bit || gemm_path_ == GemmPath::kSimt) {
    if (a_f32) {
      GemmF32Activations(args, F32(a), stream_);
    } else {
      args.a = a.data();
      GemmSimt(args, stream_);
    }
    return;
  }
  if (a_f32) {
    void* a16 = EnsureScratch(a16_, static_cast<size_t>(m * k) * 2);
    ConvertFromF32(F32(a), a16, w.dtype(), m * k, stream_);
    args.a = a16;
  } else {
    args.a = a.data();  // Already the weights' 16-bit type: no rounding pass.
  }
  if (cublas_ != nullptr) {
    cublas_->Run(args, stream_);
    return;
  }
  const size_t workspace_bytes = GemmWorkspaceBytes(m, n);
  args.workspace = static_cast<float*>(EnsureScratch(gemm_workspace_, workspace_bytes));
  args.workspace_bytes = gemm_workspace_.num_bytes;
  GemmPath path = gemm_path_;
  // An explicit path that cannot take this shape (k % 8 != 0, say) falls back rather than fail.
  if (path == GemmPath::kWgmma && !Sm90GemmSupports(args)) path = GemmPath::kAuto;
  if (path == GemmPath::kMmaSync && k % 8 != 0) path = GemmPath::kAuto;
  cuda::Gemm(args, path, stream_);
}

void CudaBackend::RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
                          TensorView out) {
  const int64_t num_tokens = x.dim(0), hidden = x.dim(1);
  CHECK(out.ShapeIs({num_tokens, hidden})) << out.ShapeString();
  CHECK(weight.ShapeIs({hidden})) << weight.ShapeString();
  CHECK(residual.empty() || residual.ShapeIs({num_tokens, hidden})) << residual.ShapeString();
  CHECK(IsFloat(out.dtype())) << DTypeName(out.dtype());
  // A 16-bit out over the f32 rows it reads would be a race between CTAs' rows.
  CHECK(out.dtype() == DType::kF32 || (out.data() != x.data() && out.data() != residual.data()))
      << "a " << DTypeName(out.dtype()) << " out must not alias x or residual";
  cuda::RmsNorm(F32(x), residual.empty() ? nullptr : F32(residual), weight.data(), weight.dtype(),
                eps, num_tokens, hidden, out.data(), out.dtype(), stream_);
}

void CudaBackend::Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) {
  RopeWriteKv(q, k, TensorView(), positions, inv_freq, TensorView(), PagedKvView());
}

void CudaBackend::WriteKv(TensorView k, TensorView v, TensorView slot_mapping,
                          const PagedKvView& kv) {
  RopeWriteKv(TensorView(), k, v, TensorView(), TensorView(), slot_mapping, kv);
}

void CudaBackend::RopeWriteKv(TensorView q, TensorView k, TensorView v, TensorView positions,
                              TensorView inv_freq, TensorView slot_mapping, const PagedKvView& kv) {
  RopeKvArgs args;
  args.num_tokens = k.dim(0);
  args.num_kv_heads = k.dim(1);
  args.head_dim = k.dim(2);
  args.k = F32(k);
  if (!inv_freq.empty()) {
    CHECK_EQ(q.dim(0), args.num_tokens);
    CHECK_EQ(q.dim(2), args.head_dim);
    CHECK(positions.ShapeIs({args.num_tokens})) << positions.ShapeString();
    CHECK(inv_freq.ShapeIs({args.head_dim / 2})) << inv_freq.ShapeString();
    args.q = F32(q);
    args.num_heads = q.dim(1);
    args.positions = I32(positions);
    args.inv_freq = F32(inv_freq);
  }
  if (!slot_mapping.empty()) {
    CHECK(v.ShapeIs({args.num_tokens, args.num_kv_heads, args.head_dim})) << v.ShapeString();
    CHECK(slot_mapping.ShapeIs({args.num_tokens})) << slot_mapping.ShapeString();
    CHECK_EQ(kv.num_kv_heads, args.num_kv_heads);
    CHECK_EQ(kv.head_dim, args.head_dim);
    args.v = F32(v);
    args.slot_mapping = I32(slot_mapping);
  }
  cuda::RopeWriteKv(args, kv, stream_);
}

void CudaBackend::SiluMul(TensorView gate, TensorView up, TensorView out) {
  CHECK_EQ(gate.numel(), up.numel());
  CHECK_EQ(gate.numel(), out.numel());
  CHECK(IsFloat(out.dtype())) << DTypeName(out.dtype());
  // A 16-bit out over gate or up would overwrite elements other threads have yet to read.
  CHECK(out.dtype() == DType::kF32 || (out.data() != gate.data() && out.data() != up.data()))
      << "a " << DTypeName(out.dtype()) << " out must not alias gate or up";
  cuda::SiluMul(F32(gate), F32(up), out.data(), out.dtype(), gate.numel(), stream_);
}

void CudaBackend::GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                                    TensorView global, TensorView local, TensorView out) {
  CHECK_EQ(q.rank(), 3);
  const int64_t num_heads = q.dim(1), head_dim = q.dim(2);
  CHECK(gate_weight.ShapeIs({num_heads, head_dim})) << gate_weight.ShapeString();
  CHECK(gate_bias.ShapeIs({num_heads})) << gate_bias.ShapeString();
  for (const TensorView* t : {&global, &local, &out}) {
    CHECK(t->ShapeIs({q.dim(0), num_heads, head_dim})) << t->ShapeString();
  }
  cuda::GatedMixArgs args;
  args.q = F32(q);
  args.gate_weight = gate_weight.data();
  args.gate_bias = gate_bias.data();
  args.weight_dtype = gate_weight.dtype();
  args.bias_dtype = gate_bias.dtype();
  args.global = F32(global);
  args.local = F32(local);
  args.out = F32(out);
  args.num_tokens = q.dim(0);
  args.num_heads = static_cast<int>(num_heads);
  args.head_dim = static_cast<int>(head_dim);
  cuda::GatedAttentionMix(args, stream_);
}

void CudaBackend::CopyKvBlocks(TensorView pairs, const PagedKvView& kv) {
  CHECK(pairs.rank() == 2 && pairs.dim(1) == 2) << pairs.ShapeString();
  cuda::CopyKvBlocks(I32(pairs), pairs.dim(0), kv, stream_);
}

void CudaBackend::PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                                 TensorView out) {
  PagedAttentionArgs a;
  a.num_tokens = q.dim(0);
  a.num_heads = q.dim(1);
  CHECK_EQ(q.dim(2), kv.head_dim);
  CHECK(out.ShapeIs({a.num_tokens, a.num_heads, kv.head_dim})) << out.ShapeString();
  a.q = F32(q);
  a.out = F32(out);
  a.query_start_loc = I32(args.query_start_loc);
  a.seq_lens = I32(args.seq_lens);
  a.block_tables = I32(args.block_tables);
  a.num_seqs = args.seq_lens.dim(0);
  a.max_blocks_per_seq = args.block_tables.dim(1);
  a.scale = args.scale;
  a.window = args.window;
  a.max_query_len = args.max_query_len;
  a.max_seq_len = args.max_seq_len;
  if (a.num_tokens == 0 || a.num_seqs == 0) return;
  if (a.max_query_len < 0 || a.max_seq_len < 0) {
    // No host-side bounds: read the batch back (a synchronization; the model always passes
    // them, tests may not).
    std::vector<int32_t> starts(static_cast<size_t>(a.num_seqs + 1));
    std::vector<int32_t> lens(static_cast<size_t>(a.num_seqs));
    CopyToHost(a.query_start_loc, starts.data(), starts.size() * sizeof(int32_t));
    CopyToHost(a.seq_lens, lens.data(), lens.size() * sizeof(int32_t));
    a.max_query_len = 0;
    a.max_seq_len = 0;
    for (int64_t s = 0; s < a.num_seqs; ++s) {
      a.max_query_len = std::max<int64_t>(a.max_query_len, starts[s + 1] - starts[s]);
      a.max_seq_len = std::max<int64_t>(a.max_seq_len, lens[s]);
    }
  }
  const size_t workspace_bytes =
      PagedAttentionWorkspaceBytes(a.num_tokens, a.num_heads, kv.head_dim, a.max_seq_len);
  a.workspace = EnsureScratch(attention_workspace_, workspace_bytes);
  a.workspace_bytes = attention_workspace_.num_bytes;
  cuda::PagedAttention(a, kv, stream_);
}

void CudaBackend::Synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

namespace {

class CudaStepGraph final : public StepGraph {
 public:
  CudaStepGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaStepGraph() override { cudaGraphExecDestroy(exec_); }
  void Replay() override { CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

}  // namespace

void CudaBackend::BeginCapture() {
  CHECK(!capturing_);
  // Thread-local mode: other threads' unrelated CUDA calls neither break nor join the capture.
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

std::unique_ptr<StepGraph> CudaBackend::EndCapture() {
  CHECK(capturing_);
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return std::make_unique<CudaStepGraph>(exec, stream_);
}

}  // namespace iquest::cuda
