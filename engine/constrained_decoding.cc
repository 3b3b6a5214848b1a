#include "engine/constrained_decoding.h"

#include <algorithm>

namespace iquest {

ConstrainedDecoding::Entry& ConstrainedDecoding::Sync(const Request& request) {
  GrammarMatcher& matcher = *request.sampling.grammar;
  auto [it, inserted] = states_.try_emplace(request.id);
  Entry& e = it->second;
  const int64_t num_output = request.num_output_tokens();
  if (inserted || e.num_consumed > num_output) e = Entry{matcher.initial(), 0, false};
  const std::span<const int32_t> output = request.output_token_ids();
  while (!e.dead && e.num_consumed < num_output) {
    const int32_t token = output[static_cast<size_t>(e.num_consumed)];
    // A stop token ends the output; it is not text for the grammar.
    const bool is_stop =
        std::find(request.eos_token_ids.begin(), request.eos_token_ids.end(), token) !=
            request.eos_token_ids.end() ||
        std::find(request.sampling.stop_token_ids.begin(), request.sampling.stop_token_ids.end(),
                  token) != request.sampling.stop_token_ids.end();
    if (!(is_stop && e.state.accepting()) && !matcher.Advance(e.state, token)) e.dead = true;
    ++e.num_consumed;
  }
  return e;
}

std::vector<TokenConstraint> ConstrainedDecoding::Constraints(const ScheduledBatch& batch) {
  std::vector<TokenConstraint> out(batch.requests.size());
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const ScheduledRequest& s = batch.requests[i];
    const Request& r = *s.request;
    if (r.sampling.grammar == nullptr) continue;
    if (r.num_computed_tokens + s.num_tokens != r.num_tokens()) continue;  // Samples nothing.
    Entry& e = Sync(r);
    out[i].mask = r.sampling.grammar->Mask(e.state);
    out[i].allow_stop = e.state.accepting() && !e.dead;
  }
  return out;
}

ConstrainedDecoding::Verdict ConstrainedDecoding::AfterStep(const Request& request) {
  if (request.sampling.grammar == nullptr) return Verdict::kContinue;
  const Entry& e = Sync(request);
  if (e.dead) return Verdict::kDeadEnd;
  return e.state.complete() ? Verdict::kComplete : Verdict::kContinue;
}

}  // namespace iquest
