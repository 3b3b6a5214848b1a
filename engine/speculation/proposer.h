// Proposer: where speculative drafts come from (speculator.h decides how many each request may
// verify; the proposer guesses them). Engine thread only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/request.h"

namespace iquest {

struct DraftQuery {
  const Request* request;  // Running and decoding: num_computed_tokens == num_tokens() - 1.
  int64_t max_drafts;      // >= 1.
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  // Drafts for each query, in order: up to max_drafts tokens each, possibly none. An error is a
  // failed proposer (a draft model's step); the engine then decodes without drafts.
  virtual absl::StatusOr<std::vector<std::vector<int32_t>>> Propose(
      std::span<const DraftQuery> queries) = 0;
  // The request is finished or preempted: drop what is kept for it.
  virtual void Forget(uint64_t /*id*/) {}
  // KV blocks the proposer's own pool has in use (a draft model's); 0 for none.
  virtual int64_t num_used_blocks() const { return 0; }
};

}  // namespace iquest
