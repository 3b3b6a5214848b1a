// LlamaModel on a backend whose gemm_input_dtype() is bf16 (what the CUDA backend reports for
// 16-bit weights): RmsNorm and SiluMul write the GEMM inputs in bf16 and the GEMMs read them
// as they are. Checked on the CPU through a test double that is the reference backend in
// every op but reports bf16, so the fused variants of the reference ops run in the real model
// data flow (q/k/v and gate/up reading one rounded hidden state, the SiLU output feeding the
// down projection, the final norm's bf16 rows gathered for the LM head).
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "tests/testing/random_tensor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

// The reference backend, reporting bf16 GEMM inputs; counts the Gemm calls that got them.
class Bf16InputBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu-bf16-input"; }
  DType gemm_input_dtype() const override { return DType::kBF16; }
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) override {
    return cpu_.Allocate(num_bytes);
  }
  void CopyToDevice(const void* host, void* device, size_t num_bytes) override {
    cpu_.CopyToDevice(host, device, num_bytes);
  }
  void CopyToHost(const void* device, void* host, size_t num_bytes) override {
    cpu_.CopyToHost(device, host, num_bytes);
  }
  absl::StatusOr<TensorView> UploadWeight(TensorView host) override { return host; }
  void Embed(TensorView ids, TensorView table, TensorView out) override {
    cpu_.Embed(ids, table, out);
  }
  void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) override {
    if (a.dtype() == DType::kBF16) ++bf16_gemms;
    cpu_.Gemm(a, w, bias, out);
  }
  void RmsNorm(TensorView x, TensorView r, TensorView w, float eps, TensorView out) override {
    cpu_.RmsNorm(x, r, w, eps, out);
  }
  void Rope(TensorView q, TensorView k, TensorView pos, TensorView freq) override {
    cpu_.Rope(q, k, pos, freq);
  }
  void SiluMul(TensorView gate, TensorView up, TensorView out) override {
    cpu_.SiluMul(gate, up, out);
  }
  void WriteKv(TensorView k, TensorView v, TensorView slots, const PagedKvView& kv) override {
    cpu_.WriteKv(k, v, slots, kv);
  }
  void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) override {
    cpu_.CopyKvBlocks(pairs, kv);
  }
  void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                      TensorView out) override {
    cpu_.PagedAttention(q, kv, args, out);
  }
  void GatedAttentionMix(TensorView q, TensorView w, TensorView b, TensorView global,
                         TensorView local, TensorView out) override {
    cpu_.GatedAttentionMix(q, w, b, global, local, out);
  }
  void Argmax(TensorView logits, TensorView out) override { cpu_.Argmax(logits, out); }
  void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                    std::span<SampledId> out) override {
    cpu_.SampleTokens(logits, rows, out);
  }

  int64_t bf16_gemms = 0;

 private:
  CpuBackend cpu_;
};

// Prefills `prompt`, then feeds `continuation` one token per step (the same tokens whatever
// the backend, so that the logits compare step by step); returns every step's last-token
// logits.
std::vector<std::vector<float>> RunSteps(const std::string& dir, Backend& backend,
                                         const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& continuation) {
  auto model = LlamaModel::Load(dir, backend);
  CHECK(model.ok()) << model.status();
  const int64_t block_size = 4;
  auto cache = KvCache::Create(backend, (*model)->config(), {64, block_size, DType::kF32});
  CHECK(cache.ok()) << cache.status();
  std::vector<int32_t> table(64);
  std::iota(table.begin(), table.end(), 0);
  std::vector<int32_t> tokens = prompt;
  int64_t computed = 0;
  std::vector<std::vector<float>> all;
  for (size_t step = 0; step <= continuation.size(); ++step) {
    BatchBuilder builder(block_size);
    builder.AddSequence(std::span<const int32_t>(tokens).subspan(computed), computed, table,
                        LogitsWanted::kLast);
    std::vector<float> logits;
    CHECK((*model)->Forward(builder.Build(), **cache, logits).ok());
    all.push_back(logits);
    computed = static_cast<int64_t>(tokens.size());
    if (step < continuation.size()) tokens.push_back(continuation[step]);
  }
  return all;
}

TEST(GemmInputDtypeTest, Bf16GemmInputsGiveLogitsCloseToF32) {
  for (const char* dtype : {"bf16", "f32"}) {
    SCOPED_TRACE(dtype);
    testing::TempDir dir;
    TinyModelOptions options;
    options.dtype = dtype;
    options.num_layers = 3;
    ASSERT_OK(WriteTinyModel(dir.path(), options));
    const std::vector<int32_t> prompt = {5, 17, 200, 3, 99, 42, 7};
    const std::vector<int32_t> continuation = {11, 250, 0, 128, 64, 1, 33, 77};
    CpuBackend f32;
    const auto expected = RunSteps(dir.path(), f32, prompt, continuation);
    Bf16InputBackend bf16;
    const auto got = RunSteps(dir.path(), bf16, prompt, continuation);
    // q, k, v, gate, up and down of every layer read bf16; o_proj (attention output) and the
    // LM head (gathered rows, widened by Embed) read f32.
    EXPECT_EQ(bf16.bf16_gemms, 6 * options.num_layers * static_cast<int64_t>(expected.size()));
    ASSERT_EQ(got.size(), expected.size());
    double worst = 0.0;
    for (size_t step = 0; step < got.size(); ++step) {
      worst = std::max(worst, testing::MaxRelativeError(got[step], expected[step]));
    }
    // bf16 keeps 8 significant bits (relative rounding error <= 2^-9 = 0.2%) per GEMM input;
    // through 3 layers and the LM head the logits stay within 2% normwise, and are not equal
    // (the rounding really happens).
    RecordProperty(std::string("worst_rel_err_") + dtype, std::to_string(worst));
    EXPECT_LE(worst, 2e-2);
    EXPECT_GT(worst, 0.0);
  }
}

}  // namespace
}  // namespace iquest
