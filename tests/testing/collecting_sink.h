// Engine test helpers: CollectingSink, a TokenSink that keeps every output of one request, by
// sample (Wait() returns once the request is done), and the tiny models' engine configuration.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/request_outputs.h"

namespace iquest {

// The engine tests' configuration for the tiny models: blocks of 4 tokens, 32 seats, a context
// of 256.
inline EngineConfig TinyEngineConfig(int64_t num_blocks, int64_t budget) {
  EngineConfig config;
  config.kv_cache.num_blocks = num_blocks;
  config.kv_cache.block_size = 4;
  config.scheduler.max_num_batched_tokens = budget;
  config.scheduler.max_num_seqs = 32;
  config.scheduler.max_model_len = 256;
  return config;
}

class CollectingSink : public TokenSink {
 public:
  void OnOutput(GenerationOutput output) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!output.token_ids.empty()) {
      tokens_[output.sample_index].insert(tokens_[output.sample_index].end(),
                                          output.token_ids.begin(), output.token_ids.end());
    }
    text_[output.sample_index] += output.text;
    if (output.finished) reasons_[output.sample_index] = output.finish_reason;
    for (auto& p : output.prompt_logprobs) prompt_logprobs_.push_back(p);
    if (output.request_done) {
      done_ = true;
      last_ = output;
      done_cv_.notify_all();
    }
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    ASSERT_TRUE(done_cv_.wait_for(lock, std::chrono::seconds(60), [&] { return done_; }));
  }
  size_t NumTokens(int32_t sample = 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    return tokens_[sample].size();
  }
  std::map<int32_t, std::vector<int32_t>> tokens_;
  std::map<int32_t, std::string> text_;
  std::map<int32_t, FinishReason> reasons_;
  std::vector<PromptLogprob> prompt_logprobs_;
  GenerationOutput last_;

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
};

}  // namespace iquest
