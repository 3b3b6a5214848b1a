// ModelRunner on the real tiny model: rows sampled on the backend (Backend::SampleTokens) give
// exactly the tokens and logprobs of the host path (every row copied out and run through the
// Sampler), for greedy and seeded rows mixed in one batch with rows that must take the host path
// (logit bias, top logprobs, the min_tokens mask, prompt logprobs) and with a prompt that forks
// into n samples; and only the host path's rows cost host copies. On both CPU backends.
#include "engine/model_runner.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/make_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

constexpr int64_t kBlockSize = 4;
constexpr int64_t kNumBlocks = 256;

// What one sample produced: its tokens and their logprobs, in order.
struct SampleStream {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::tuple<int64_t, int32_t, float>> prompt_logprobs;  // position, token, logprob.
  bool operator==(const SampleStream&) const = default;
};
using Streams = std::map<std::pair<std::string, int32_t>, SampleStream>;

std::unique_ptr<Request> MakeRequest(std::string id, int prompt_len, int salt,
                                     SamplingParams sampling) {
  auto r = std::make_unique<Request>();
  r->request_id = std::move(id);
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back((i * 29 + salt * 13 + 5) % 256);
  r->SetPrompt(std::move(prompt));
  if (!sampling.seed) sampling.seed = 1000 + static_cast<uint64_t>(salt);
  r->sampling = std::move(sampling);
  r->eos_token_ids = {1};
  return r;
}

// The mix: every kind of row, in one batch.
std::vector<std::unique_ptr<Request>> Workload() {
  std::vector<std::unique_ptr<Request>> out;
  auto sampling = [](float temperature, int max_tokens) {
    SamplingParams p;
    p.temperature = temperature;
    p.max_tokens = max_tokens;
    return p;
  };
  out.push_back(MakeRequest("greedy", 9, 1, sampling(0.0f, 14)));
  out.push_back(MakeRequest("seeded", 23, 2, sampling(0.8f, 14)));
  SamplingParams filtered = sampling(1.0f, 14);
  filtered.top_k = 20;
  filtered.top_p = 0.9f;
  filtered.min_p = 0.02f;
  out.push_back(MakeRequest("filtered", 5, 3, filtered));
  SamplingParams biased = sampling(0.7f, 10);
  biased.logit_bias = {{3, 4.0f}, {17, -100.0f}};
  out.push_back(MakeRequest("biased", 11, 4, biased));
  SamplingParams top = sampling(0.9f, 10);
  top.logprobs = 3;
  out.push_back(MakeRequest("top_logprobs", 7, 5, top));
  SamplingParams fork = sampling(1.0f, 12);
  fork.n = 3;
  out.push_back(MakeRequest("fork", 13, 6, fork));
  SamplingParams min_tokens = sampling(0.6f, 12);
  min_tokens.min_tokens = 5;
  min_tokens.stop_token_ids = {2};
  out.push_back(MakeRequest("min_tokens", 8, 7, min_tokens));
  SamplingParams prompt = sampling(0.0f, 6);
  prompt.prompt_logprobs = 2;
  out.push_back(MakeRequest("prompt_logprobs", 30, 8, prompt));
  return out;
}

class ModelRunnerTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    TinyModelOptions options;
    options.vocab_size = 256;
    options.max_position_embeddings = 256;
    ASSERT_OK(WriteTinyModel(dir_->path(), options));
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    BackendOptions options;
    options.cpu_kernels = GetParam();
    options.num_threads = 2;
    ASSERT_OK_AND_ASSIGN(backend_, MakeBackend(Device::kCpu, options));
    ASSERT_OK_AND_ASSIGN(model_, LlamaModel::Load(dir_->path(), *backend_));
  }

  // Runs the workload to the end through a scheduler (a small token budget, so prompts arrive
  // in chunks and decodes share steps with them) and returns every sample's stream.
  Streams Run(bool backend_sampling, int64_t& logits_bytes_to_host) {
    SchedulerConfig config;
    config.max_num_batched_tokens = 24;
    config.max_num_seqs = 16;
    config.max_model_len = 256;
    KvCacheConfig cache_config{kNumBlocks, kBlockSize, DType::kF32};
    auto cache = KvCache::Create(*backend_, model_->config(), cache_config);
    EXPECT_OK(cache);
    Scheduler scheduler(config, kNumBlocks, kBlockSize, model_->config().vocab_size);
    ModelRunner runner(*model_, **cache);
    runner.set_backend_sampling(backend_sampling);
    for (auto& r : Workload()) EXPECT_OK(scheduler.AddRequest(std::move(r)));
    Streams streams;
    for (int step = 0; step < 200 && scheduler.has_work(); ++step) {
      const ScheduledBatch batch = scheduler.Schedule(Clock::now());
      auto outputs = runner.Execute(batch);
      EXPECT_OK(outputs);
      std::vector<std::vector<int32_t>> sampled(batch.requests.size());
      for (size_t i = 0; i < batch.requests.size(); ++i) {
        const Request& r = *batch.requests[i].request;
        const std::vector<SampledToken>& samples = (*outputs)[i].samples;
        for (const PromptLogprob& p : (*outputs)[i].prompt_logprobs) {
          streams[{r.request_id, 0}].prompt_logprobs.emplace_back(p.position, p.token_id,
                                                                  p.logprobs.logprob);
        }
        for (size_t k = 0; k < samples.size(); ++k) {
          const int32_t index = samples.size() > 1 ? static_cast<int32_t>(k) : r.sample_index;
          SampleStream& stream = streams[{r.request_id, index}];
          stream.tokens.push_back(samples[k].token);
          stream.logprobs.push_back(samples[k].logprob);
          sampled[i].push_back(samples[k].token);
        }
      }
      scheduler.Update(batch, sampled);
      scheduler.TakeFinished();
    }
    EXPECT_FALSE(scheduler.has_work());
    logits_bytes_to_host = runner.bytes_to_host();
    return streams;
  }

  static testing::TempDir* dir_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
};

testing::TempDir* ModelRunnerTest::dir_ = nullptr;

TEST_P(ModelRunnerTest, BackendSamplingEqualsTheHostPathExactly) {
  int64_t host_bytes = 0, backend_bytes = 0;
  const Streams host = Run(/*backend_sampling=*/false, host_bytes);
  const Streams backend = Run(/*backend_sampling=*/true, backend_bytes);
  ASSERT_EQ(host.size(), backend.size());
  // 8 requests, the fork's 3 samples.
  EXPECT_EQ(host.size(), 10u);
  for (const auto& [key, stream] : host) {
    SCOPED_TRACE(key.first + "/" + std::to_string(key.second));
    ASSERT_TRUE(backend.contains(key));
    EXPECT_FALSE(stream.tokens.empty());
    EXPECT_EQ(stream.tokens, backend.at(key).tokens);
    EXPECT_EQ(stream.logprobs, backend.at(key).logprobs);  // Bit for bit.
    EXPECT_EQ(stream.prompt_logprobs, backend.at(key).prompt_logprobs);
  }
  // Prompt logprobs name the prompt's own tokens, positions 1..29 once each.
  const auto& prompt_rows = host.at({"prompt_logprobs", 0}).prompt_logprobs;
  ASSERT_EQ(prompt_rows.size(), 29u);
  for (size_t j = 0; j < prompt_rows.size(); ++j) {
    const int64_t position = static_cast<int64_t>(j) + 1;
    EXPECT_EQ(std::get<0>(prompt_rows[j]), position);
    EXPECT_EQ(std::get<1>(prompt_rows[j]), (position * 29 + 8 * 13 + 5) % 256);
  }
  // The fork's samples differ from one another (they draw from their own streams).
  EXPECT_NE(host.at({"fork", 0}).tokens, host.at({"fork", 1}).tokens);
  // Only the host path's rows are copied: the prompt-logprob rows and the biased, top-logprob
  // and (until it has 5 tokens) min_tokens requests' last rows.
  EXPECT_GT(backend_bytes, 0);
  EXPECT_LT(backend_bytes, host_bytes / 2);
}

INSTANTIATE_TEST_SUITE_P(CpuBackends, ModelRunnerTest, ::testing::Values("reference", "auto"));

}  // namespace
}  // namespace iquest
