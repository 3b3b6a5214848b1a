// ModelRunner: ScheduledBatch -> BatchInputs -> LlamaModel::ForwardToDevice -> sampling. Performs
// the step's copy-on-write block copies first and asks the model only for the logits rows it
// needs (the last row of a request that reaches its end, every prompt row when prompt logprobs
// are wanted, the real row and every draft row of a request verifying speculative drafts). Then
// each finishing request gets one token (or n, for a prompt that forks; or, when it verified
// drafts, the accepted drafts and one more token, below):
//  - rows that need no logit processor and no top logprobs (Sampler::NeedsHostLogits false) are
//    sampled by the backend where the logits are (Backend::SampleTokens); only the token and its
//    logprob come back;
//  - the other rows, and every row scored for prompt logprobs, are copied to the host and go
//    through the Sampler.
// On the CPU backends both paths apply the same rule to the same numbers, so a request's tokens
// do not depend on the path its rows took.
//
// Verifying drafts d_0..d_{k-1} (deterministic guesses: a point-mass proposal q = δ(d_j)): row j
// holds the target's distribution p_j after the real token and d_0..d_{j-1}. The standard
// rejection rule accepts d_j with probability min(1, p_j(d_j) / q(d_j)) = p_j(d_j) and otherwise
// draws from the residual norm(max(0, p_j - q)), which is p_j without d_j. Drawing s_j from p_j
// with the row's own random number and accepting iff s_j == d_j is that rule exactly: the
// output at row j is s_j ~ p_j either way, and continues to row j + 1 iff s_j == d_j. So the
// step emits s_0..s_m, m the first row whose draw differs from its draft (or k, the bonus
// token), and since each row's random number is the one its position would have had without
// speculation, a seeded request's tokens are the same with speculation or without.
#pragma once

#include <functional>
#include <span>
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
  // None for a prompt chunk short of its end; one token per sample when a prompt forks (`fork`);
  // otherwise the request's new tokens in order: the accepted drafts, then one more.
  std::vector<SampledToken> samples;
  bool fork = false;
  int64_t num_draft_tokens = 0;     // Drafts verified this step...
  int64_t num_accepted_drafts = 0;  // ...and how many of them are in `samples`.
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
    int64_t num_drafts = 0;  // Rows after the first are draft rows.
    bool reaches_end = false;
    bool on_host = false;      // Its rows are copied to the host...
    int64_t host_row = 0;      // ...starting at this row of host_logits_.
    size_t first_sampled = 0;  // Its first entry in sample_rows_ (backend path).
  };

  // The tokens of a request that verified drafts (the class comment's rule).
  void Verify(const Request& r, const RowPlan& plan,
              const std::function<std::span<const float>(int64_t)>& host_row,
              RequestStepOutput& out);

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
  std::vector<int32_t> chunk_;
};

}  // namespace iquest
