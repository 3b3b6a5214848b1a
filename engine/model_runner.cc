#include "engine/model_runner.h"

#include <span>

#include "common/check.h"
#include "common/status.h"

namespace iquest {

absl::StatusOr<std::vector<RequestStepOutput>> ModelRunner::Execute(
    const ScheduledBatch& batch, const ConstraintSource& constraints) {
  // Copy-on-write copies in the global pool, then in a Loop model's local one.
  auto pairs = [](const std::vector<BlockCopy>& copies) {
    std::vector<std::pair<int32_t, int32_t>> out;
    for (const BlockCopy& copy : copies) out.emplace_back(copy.src_block, copy.dst_block);
    return out;
  };
  RETURN_IF_ERROR(cache_.CopyBlocks(pairs(batch.block_copies)));
  RETURN_IF_ERROR(cache_.CopyLocalBlocks(pairs(batch.local_block_copies)));
  const int64_t block_size = cache_.block_size();
  int64_t max_blocks = 1;
  for (const ScheduledRequest& s : batch.requests) {
    const int64_t seq_len = s.request->num_computed_tokens + s.num_tokens;
    max_blocks = std::max(max_blocks, (seq_len + block_size - 1) / block_size);
  }
  BatchBuilder builder(block_size, max_blocks);
  plans_.assign(batch.requests.size(), RowPlan());
  sample_rows_.clear();
  int64_t num_rows = 0, num_host_rows = 0;
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& r = *batch.requests[i].request;
    RowPlan& plan = plans_[i];
    const int64_t start = r.num_computed_tokens;
    const int64_t count = batch.requests[i].num_tokens;
    plan.num_drafts = batch.requests[i].num_draft_tokens;
    plan.reaches_end = start + count - plan.num_drafts == r.num_tokens();
    const bool scores_prompt = r.sampling.prompt_logprobs > 0 && start < r.num_prompt_tokens();
    plan.wanted = scores_prompt || plan.num_drafts > 0
                      ? LogitsWanted::kAll
                      : (plan.reaches_end ? LogitsWanted::kLast : LogitsWanted::kNone);
    std::span<const int32_t> chunk = std::span<const int32_t>(r.token_ids).subspan(start, count);
    if (plan.num_drafts > 0) {
      // The last real token, then the drafts.
      CHECK_EQ(count, plan.num_drafts + 1);
      CHECK_LE(plan.num_drafts, static_cast<int64_t>(r.draft_token_ids.size()));
      chunk_.assign(1, r.token(start));
      chunk_.insert(chunk_.end(), r.draft_token_ids.begin(),
                    r.draft_token_ids.begin() + plan.num_drafts);
      chunk = chunk_;
    }
    builder.AddSequence(chunk, start, r.block_ids, plan.wanted,
                        cache_.has_local_pool() ? std::span<const int32_t>(r.local_block_ids)
                                                : std::span<const int32_t>());
    plan.first_row = num_rows;
    plan.num_rows =
        plan.wanted == LogitsWanted::kAll ? count : (plan.wanted == LogitsWanted::kLast);
    num_rows += plan.num_rows;
    if (plan.wanted == LogitsWanted::kNone) continue;
    // Later draft rows need the host no sooner than the first (min_tokens only lapses).
    plan.on_host = scores_prompt || !backend_sampling_ || Sampler::NeedsHostLogits(r);
    if (plan.on_host) {
      plan.host_row = num_host_rows;
      num_host_rows += plan.num_rows;
      continue;
    }
    // The backend path: one draw per sample (n for a prompt that forks into n samples), or one
    // per row when verifying drafts.
    plan.first_sampled = sample_rows_.size();
    const int64_t row = plan.first_row + plan.num_rows - 1;
    if (plan.num_drafts > 0) {
      for (int64_t j = 0; j <= plan.num_drafts; ++j)
        sample_rows_.push_back(Sampler::BackendRow(r, r.sample_index, plan.first_row + j, j));
    } else if (r.sampling.n > 1) {
      for (int32_t k = 0; k < r.sampling.n; ++k)
        sample_rows_.push_back(Sampler::BackendRow(r, k, row));
    } else {
      sample_rows_.push_back(Sampler::BackendRow(r, r.sample_index, row));
    }
  }
  ASSIGN_OR_RETURN(const TensorView logits, model_.ForwardToDevice(builder.Build(), cache_));
  Backend& backend = model_.backend();
  sampled_ids_.resize(sample_rows_.size());
  if (!sample_rows_.empty()) backend.SampleTokens(logits, sample_rows_, sampled_ids_);
  bytes_to_host_ += static_cast<int64_t>(sampled_ids_.size() * sizeof(SampledId));
  const int64_t vocab = model_.config().vocab_size;
  host_logits_.resize(static_cast<size_t>(num_host_rows * vocab));
  for (const RowPlan& plan : plans_) {
    if (!plan.on_host) continue;
    const TensorView rows = logits.Rows(plan.first_row, plan.num_rows);
    backend.CopyToHost(rows.data(), host_logits_.data() + plan.host_row * vocab, rows.num_bytes());
    bytes_to_host_ += static_cast<int64_t>(rows.num_bytes());
  }
  backend.Synchronize();
  auto host_row = [&](int64_t index) {
    return std::span<const float>(host_logits_)
        .subspan(static_cast<size_t>(index * vocab), static_cast<size_t>(vocab));
  };

  std::vector<TokenConstraint> row_constraints;
  if (constraints) row_constraints = constraints();
  std::vector<RequestStepOutput> outputs(batch.requests.size());
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& r = *batch.requests[i].request;
    const RowPlan& plan = plans_[i];
    const int64_t start = r.num_computed_tokens;
    if (plan.wanted == LogitsWanted::kAll) {
      // Row j predicts the token at start + j + 1.
      for (int64_t j = 0; j < plan.num_rows && start + j + 1 < r.num_prompt_tokens(); ++j) {
        const int64_t position = start + j + 1;
        outputs[i].prompt_logprobs.push_back(
            {position, r.token(position),
             ComputeLogprobs(host_row(plan.host_row + j), r.token(position),
                             r.sampling.prompt_logprobs)});
      }
    }
    if (!plan.reaches_end) continue;  // A prompt chunk short of the end.
    if (plan.num_drafts > 0) {
      Verify(r, plan, host_row, outputs[i]);
      continue;
    }
    outputs[i].fork = r.sampling.n > 1;
    const int32_t num_samples = r.sampling.n > 1 ? r.sampling.n : 1;
    std::vector<SampledToken>& samples = outputs[i].samples;
    for (int32_t k = 0; k < num_samples; ++k) {
      const int32_t sample_index = r.sampling.n > 1 ? k : r.sample_index;
      if (plan.on_host) {
        const TokenConstraint* constraint =
            i < row_constraints.size() && row_constraints[i].mask ? &row_constraints[i] : nullptr;
        samples.push_back(sampler_.Sample(host_row(plan.host_row + plan.num_rows - 1), r,
                                          sample_index, constraint));
      } else {
        const SampledId& id = sampled_ids_[plan.first_sampled + static_cast<size_t>(k)];
        samples.push_back({id.token, id.logprob, {}});
      }
    }
  }
  return outputs;
}

void ModelRunner::Verify(const Request& r, const RowPlan& plan,
                         const std::function<std::span<const float>(int64_t)>& host_row,
                         RequestStepOutput& out) {
  const std::span<const int32_t> drafts(r.draft_token_ids.data(),
                                        static_cast<size_t>(plan.num_drafts));
  out.num_draft_tokens = plan.num_drafts;
  for (int64_t j = 0; j <= plan.num_drafts; ++j) {
    if (plan.on_host) {
      out.samples.push_back(sampler_.Sample(host_row(plan.host_row + j), r, r.sample_index, nullptr,
                                            drafts.first(static_cast<size_t>(j))));
    } else {
      const SampledId& id = sampled_ids_[plan.first_sampled + static_cast<size_t>(j)];
      out.samples.push_back({id.token, id.logprob, {}});
    }
    if (j == plan.num_drafts || out.samples.back().token != drafts[j]) break;
    ++out.num_accepted_drafts;
  }
}

}  // namespace iquest
