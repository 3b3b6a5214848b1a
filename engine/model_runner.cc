#include "engine/model_runner.h"

#include "common/status.h"

namespace iquest {

absl::StatusOr<std::vector<RequestStepOutput>> ModelRunner::Execute(const ScheduledBatch& batch) {
  if (!batch.block_copies.empty()) {
    std::vector<std::pair<int32_t, int32_t>> pairs;
    for (const BlockCopy& copy : batch.block_copies)
      pairs.emplace_back(copy.src_block, copy.dst_block);
    RETURN_IF_ERROR(cache_.CopyBlocks(pairs));
  }
  BatchBuilder builder(cache_.block_size());
  std::vector<int64_t> first_row(batch.requests.size());  // Into the returned logits.
  std::vector<LogitsWanted> wanted(batch.requests.size());
  int64_t num_rows = 0;
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& r = *batch.requests[i].request;
    const int64_t start = r.num_computed_tokens;
    const int64_t count = batch.requests[i].num_tokens;
    chunk_.clear();
    for (int64_t p = start; p < start + count; ++p) chunk_.push_back(r.token(p));
    const bool reaches_end = start + count == r.num_tokens();
    const bool scores_prompt = r.sampling.prompt_logprobs > 0 && start < r.num_prompt_tokens();
    wanted[i] = scores_prompt ? LogitsWanted::kAll
                              : (reaches_end ? LogitsWanted::kLast : LogitsWanted::kNone);
    builder.AddSequence(chunk_, start, r.block_ids, wanted[i]);
    first_row[i] = num_rows;
    num_rows += wanted[i] == LogitsWanted::kAll ? count : (wanted[i] == LogitsWanted::kLast);
  }
  RETURN_IF_ERROR(model_.Forward(builder.Build(), cache_, logits_));
  const int64_t vocab = model_.config().vocab_size;
  auto row = [&](int64_t index) {
    return std::span<const float>(logits_).subspan(static_cast<size_t>(index * vocab),
                                                   static_cast<size_t>(vocab));
  };
  std::vector<RequestStepOutput> outputs(batch.requests.size());
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const Request& r = *batch.requests[i].request;
    const int64_t start = r.num_computed_tokens;
    const int64_t count = batch.requests[i].num_tokens;
    if (wanted[i] == LogitsWanted::kNone) continue;
    if (wanted[i] == LogitsWanted::kAll) {
      // Row j predicts the token at start + j + 1.
      for (int64_t j = 0; j < count && start + j + 1 < r.num_prompt_tokens(); ++j) {
        const int64_t position = start + j + 1;
        outputs[i].prompt_logprobs.push_back(
            {position, ComputeLogprobs(row(first_row[i] + j), r.token(position),
                                       r.sampling.prompt_logprobs)});
      }
    }
    if (start + count < r.num_tokens()) continue;  // A prompt chunk short of the end.
    const int64_t last = first_row[i] + (wanted[i] == LogitsWanted::kAll ? count - 1 : 0);
    if (r.sampling.n > 1) {
      for (int32_t k = 0; k < r.sampling.n; ++k)
        outputs[i].samples.push_back(sampler_.Sample(row(last), r, k));
    } else {
      outputs[i].samples.push_back(sampler_.Sample(row(last), r, r.sample_index));
    }
  }
  return outputs;
}

}  // namespace iquest
