// ModelRunner: ScheduledBatch -> BatchInputs -> LlamaModel::ForwardToDevice -> sampling. Performs
// the step's copy-on-write block copies first and asks the model only for the logits rows it
// needs (the last row of a request that reaches its end, every prompt row when prompt logprobs
// are wanted). Then each finishing request gets one token (or n, for a prompt that forks):
//  - rows that need no logit processor and no top logprobs (Sampler::NeedsHostLogits false) are
//    sampled by the backend where the logits are (Backend::SampleTokens); only the token and its
//    logprob come back;
//  - the other rows, and every row scored for prompt logprobs, are copied to the host and go
//    through the Sampler.
// On the CPU backends both paths apply the same rule to the same numbers, so a request's tokens
// do not depend on the path its rows took.
#pragma once

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampler.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "scheduler/scheduler.h"

namespace iquest {

struct PromptLogprob {
  int64_t position = 0;  // Prompt index of the token scored (>= 1).
  int32_t token_id = 0;  // The prompt's token at `position`.
  PositionLogprobs logprobs;
};

struct RequestStepOutput {
  std::vector<SampledToken> samples;  // 0, 1 or n entries.
  std::vector<PromptLogprob> prompt_logprobs;
};

class ModelRunner {
 public:
  ModelRunner(LlamaModel& model, KvCache& cache) : model_(model), cache_(cache) {}

  // Structured-output masks, one per batch request; called once, after the forward pass and
  // before sampling, so computing them may overlap the forward.
  using ConstraintSource = std::function<std::vector<TokenConstraint>()>;

  // One step; outputs are in batch.requests order. `constraints` may be empty (none).
  absl::StatusOr<std::vector<RequestStepOutput>> Execute(const ScheduledBatch& batch,
                                                         const ConstraintSource& constraints = {});

  // Bytes the steps' results cost to bring to the host, over all steps: the host path's logits
  // rows, plus sizeof(SampledId) for each row the backend sampled.
  int64_t bytes_to_host() const { return bytes_to_host_; }
  // Host-sampling switch for tests and benchmarks: when false, every row takes the host path
  // (the behaviour before backend sampling).
  void set_backend_sampling(bool enabled) { backend_sampling_ = enabled; }

 private:
  // Where request i's logits rows are and what happens to them.
  struct RowPlan {
    LogitsWanted wanted = LogitsWanted::kNone;
    int64_t first_row = 0;  // Into the step's logits.
    int64_t num_rows = 0;
    bool reaches_end = false;
    bool on_host = false;      // Its rows are copied to the host...
    int64_t host_row = 0;      // ...starting at this row of host_logits_.
    size_t first_sampled = 0;  // Its first entry in sample_rows_ (backend path).
  };

  LlamaModel& model_;
  KvCache& cache_;
  Sampler sampler_;
  bool backend_sampling_ = true;
  int64_t bytes_to_host_ = 0;
  // Per-step scratch, kept for its capacity.
  std::vector<RowPlan> plans_;
  std::vector<SampleRow> sample_rows_;
  std::vector<SampledId> sampled_ids_;
  std::vector<float> host_logits_;
};

}  // namespace iquest
