// The decode-graph path of LlamaModel (padding to buckets, warm-up then capture, replay into
// the captured buffers, recapture when memory moves), checked on the CPU through a test
// double: a backend whose "graphs" record the ops issued during capture, with the exact
// TensorViews they were given, and replay them. Like a CUDA graph, a replay sees only the
// memory named at capture time, so a step that forgot to refill a captured buffer, or whose
// buffers moved, gives different logits here too. Logits must equal plain CpuBackend steps
// bit for bit (the reference ops compute each row independently).
#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

class RecordingBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu-recording"; }
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t num_bytes) override {
    return cpu_.Allocate(num_bytes);
  }
  void CopyToDevice(const void* host, void* device, size_t num_bytes) override {
    EXPECT_FALSE(recording_) << "uploads belong before the graph";
    cpu_.CopyToDevice(host, device, num_bytes);
  }
  void CopyToHost(const void* device, void* host, size_t num_bytes) override {
    EXPECT_FALSE(recording_) << "no host reads during capture";
    cpu_.CopyToHost(device, host, num_bytes);
  }
  absl::StatusOr<TensorView> UploadWeight(TensorView host) override { return host; }

  void Embed(TensorView ids, TensorView table, TensorView out) override {
    Do([=, this] { cpu_.Embed(ids, table, out); });
  }
  void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) override {
    Do([=, this] { cpu_.Gemm(a, w, bias, out); });
  }
  void RmsNorm(TensorView x, TensorView r, TensorView w, float eps, TensorView out) override {
    Do([=, this] { cpu_.RmsNorm(x, r, w, eps, out); });
  }
  void Rope(TensorView q, TensorView k, TensorView pos, TensorView freq) override {
    Do([=, this] { cpu_.Rope(q, k, pos, freq); });
  }
  void SiluMul(TensorView gate, TensorView up, TensorView out) override {
    Do([=, this] { cpu_.SiluMul(gate, up, out); });
  }
  void WriteKv(TensorView k, TensorView v, TensorView slots, const PagedKvView& kv) override {
    Do([=, this] { cpu_.WriteKv(k, v, slots, kv); });
  }
  void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) override {
    Do([=, this] { cpu_.CopyKvBlocks(pairs, kv); });
  }
  void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                      TensorView out) override {
    Do([=, this] { cpu_.PagedAttention(q, kv, args, out); });
  }
  void GatedAttentionMix(TensorView q, TensorView w, TensorView b, TensorView global,
                         TensorView local, TensorView out) override {
    Do([=, this] { cpu_.GatedAttentionMix(q, w, b, global, local, out); });
  }
  void Argmax(TensorView logits, TensorView out) override {
    Do([=, this] { cpu_.Argmax(logits, out); });
  }
  void SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                    std::span<SampledId> out) override {
    EXPECT_FALSE(recording_) << "sampling reads back: never inside a graph";
    cpu_.SampleTokens(logits, rows, out);
  }

  bool SupportsGraphs() const override { return true; }
  void BeginCapture() override {
    ASSERT_FALSE(recording_);
    recording_ = true;
    ops_.clear();
  }
  std::unique_ptr<StepGraph> EndCapture() override {
    recording_ = false;
    ++captures;
    return std::make_unique<Graph>(std::move(ops_), &replays);
  }
  uint64_t scratch_epoch() const override { return 0; }

  int captures = 0;
  int replays = 0;

 private:
  class Graph final : public StepGraph {
   public:
    Graph(std::vector<std::function<void()>> ops, int* replays)
        : ops_(std::move(ops)), replays_(replays) {}
    void Replay() override {
      ++*replays_;
      for (auto& op : ops_) op();
    }

   private:
    std::vector<std::function<void()>> ops_;
    int* replays_;
  };

  void Do(std::function<void()> op) {
    if (recording_) {
      ops_.push_back(std::move(op));
    } else {
      op();
    }
  }

  CpuBackend cpu_;
  bool recording_ = false;
  std::vector<std::function<void()>> ops_;
};

struct Seq {
  std::vector<int32_t> tokens;
  int64_t computed = 0;
  std::vector<int32_t> table;
};

// Decodes `seqs` greedily for `steps` steps on `backend` (prompts prefilled first), dropping
// sequence 0 halfway so that the batch changes bucket; returns every step's logits.
std::vector<std::vector<float>> DecodeSteps(const std::string& dir, Backend& backend,
                                            std::vector<Seq> seqs, int steps, bool graphs,
                                            int64_t* num_graphs) {
  auto model = LlamaModel::Load(dir, backend);
  CHECK(model.ok()) << model.status();
  (*model)->set_decode_graphs(graphs);
  const int64_t block_size = 4;
  KvCacheConfig cache_config{256, block_size, DType::kF32};
  auto cache = KvCache::Create(backend, (*model)->config(), cache_config);
  CHECK(cache.ok());
  const int64_t vocab = (*model)->config().vocab_size;
  std::vector<std::vector<float>> all;
  std::vector<float> logits;
  for (int step = 0; step < steps; ++step) {
    if (step == steps / 2) seqs.erase(seqs.begin());
    BatchBuilder builder(block_size);
    for (Seq& s : seqs) {
      builder.AddSequence(std::span<const int32_t>(s.tokens).subspan(s.computed), s.computed,
                          s.table, LogitsWanted::kLast);
    }
    CHECK((*model)->Forward(builder.Build(), **cache, logits).ok());
    all.push_back(logits);
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = seqs[i];
      s.computed = static_cast<int64_t>(s.tokens.size());
      const float* row = logits.data() + i * vocab;
      s.tokens.push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
    }
  }
  *num_graphs = (*model)->num_decode_graphs();
  return all;
}

class DecodeGraphArchTest : public ::testing::TestWithParam<std::string> {};

// Llama, and the Loop model (two passes, a 4-token local window): its whole step is captured.
TEST_P(DecodeGraphArchTest, ReplayedStepsGiveTheSameLogitsAsPlainSteps) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.arch = GetParam();
  options.vocab_size = 300;
  options.loop_window = 4;
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  // Three sequences with their own shuffled blocks; 60 + 40 steps reach 100 tokens, past the
  // 16-block (64-token) bucket, so the block bucket changes on the way too.
  std::vector<Seq> seqs(3);
  std::vector<int32_t> blocks(256);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::reverse(blocks.begin(), blocks.end());
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 5 + 7 * s; ++i) seqs[s].tokens.push_back((i * 31 + s * 7 + 3) % 300);
    seqs[s].table.assign(blocks.begin() + 64 * s, blocks.begin() + 64 * (s + 1));
  }
  CpuBackend plain;
  int64_t plain_graphs = 0, graphs = 0;
  const auto expected = DecodeSteps(dir.path(), plain, seqs, 80, /*graphs=*/true, &plain_graphs);
  EXPECT_EQ(plain_graphs, 0) << "CpuBackend has no graphs";
  RecordingBackend recording;
  const auto got = DecodeSteps(dir.path(), recording, seqs, 80, /*graphs=*/true, &graphs);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t step = 0; step < got.size(); ++step) {
    ASSERT_EQ(got[step], expected[step]) << "step " << step;
  }
  // Buckets seen: 4 sequences (3 padded) then 2, each at 16 and 32 blocks: captured once each
  // after a warm-up step, then replayed.
  EXPECT_GE(recording.captures, 3);
  EXPECT_EQ(graphs, recording.captures);
  EXPECT_GT(recording.replays, 60);
}

INSTANTIATE_TEST_SUITE_P(Architectures, DecodeGraphArchTest, ::testing::Values("llama", "loop"));

TEST(DecodeGraphTest, DisabledGraphsNeverCapture) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.vocab_size = 300;
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  std::vector<Seq> seqs(2);
  for (int s = 0; s < 2; ++s) {
    seqs[s].tokens = {1, 2, 3};
    seqs[s].table.resize(64);
    std::iota(seqs[s].table.begin(), seqs[s].table.end(), 64 * s);
  }
  RecordingBackend recording;
  int64_t graphs = 0;
  DecodeSteps(dir.path(), recording, seqs, 10, /*graphs=*/false, &graphs);
  EXPECT_EQ(recording.captures, 0);
  EXPECT_EQ(graphs, 0);
}

}  // namespace
}  // namespace iquest
