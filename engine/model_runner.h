// ModelRunner: ScheduledBatch -> BatchInputs -> LlamaModel::Forward -> Sampler. Performs the
// step's copy-on-write block copies first, asks the model only for the logits rows it needs
// (the last row of a request that reaches its end, every prompt row when prompt logprobs are
// wanted), and samples one token — or n, for a prompt that forks — per finishing request.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampler.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "scheduler/scheduler.h"

namespace iquest {

struct PromptLogprob {
  int64_t position = 0;  // Prompt index of the token scored (>= 1).
  PositionLogprobs logprobs;
};

struct RequestStepOutput {
  std::vector<SampledToken> samples;  // 0, 1 or n entries.
  std::vector<PromptLogprob> prompt_logprobs;
};

class ModelRunner {
 public:
  ModelRunner(LlamaModel& model, KvCache& cache) : model_(model), cache_(cache) {}

  // One step; outputs are in batch.requests order.
  absl::StatusOr<std::vector<RequestStepOutput>> Execute(const ScheduledBatch& batch);

 private:
  LlamaModel& model_;
  KvCache& cache_;
  Sampler sampler_;
  std::vector<float> logits_;
  std::vector<int32_t> chunk_;
};

}  // namespace iquest
