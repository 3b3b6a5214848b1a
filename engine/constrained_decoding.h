// ConstrainedDecoding: each structured-output sample's place in its grammar, kept by the engine
// and keyed by scheduler id. A place is a pure function of the grammar and the sample's output
// tokens, so it is brought up to date lazily from those tokens: a fork (n > 1) starts from the
// prompt's place and replays its own first token, a preempted request keeps its place (its
// output is kept), and a place ahead of the output (a rollback) is replayed from the start.
//
// Constraints() may run on a helper thread while the engine thread runs the forward pass (it
// only reads the batch's requests); everything else is the engine thread's.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "scheduler/scheduler.h"
#include "structured/grammar_matcher.h"

namespace iquest {

// What the sampler applies to one row: tokens outside `mask` are impossible; EOS and stop
// tokens are possible only when `allow_stop` (the grammar may end here).
struct TokenConstraint {
  std::shared_ptr<const TokenMask> mask;  // Null: the row is unconstrained.
  bool allow_stop = false;
};

class ConstrainedDecoding {
 public:
  enum class Verdict { kContinue, kComplete, kDeadEnd };

  // One entry per batch request: the constraint of the token it samples this step (null mask
  // for unconstrained requests and for prompt chunks short of the end).
  std::vector<TokenConstraint> Constraints(const ScheduledBatch& batch);
  // After the step's tokens were appended: kComplete when the grammar is finished (nothing may
  // follow), kDeadEnd when the output left the grammar (only a token the mask could not stop,
  // e.g. EOS with ignore_eos).
  Verdict AfterStep(const Request& request);
  void Forget(uint64_t id) { states_.erase(id); }
  size_t num_tracked() const { return states_.size(); }

 private:
  struct Entry {
    GrammarState state;
    int64_t num_consumed = 0;  // Output tokens `state` is past.
    bool dead = false;
  };
  Entry& Sync(const Request& request);

  std::unordered_map<uint64_t, Entry> states_;
};

}  // namespace iquest
