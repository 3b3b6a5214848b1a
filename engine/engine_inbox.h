// EngineInbox: what other threads hand the engine thread (in the spirit of llama.cpp's
// server_queue). gRPC threads Push submissions and Cancel ids; the engine thread Takes both at a
// step boundary, and Waits here when it has nothing to do. It also owns the set of live
// requests, keyed by LiveKey(owner, request_id) (a duplicate is refused while the first is live)
// and the drain state.
//
// Everything is guarded by one mutex, held only for these short calls: the engine thread never
// holds it while stepping, so a Submit never waits for a forward pass.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "scheduler/request.h"

namespace iquest {

class TokenSink;

class EngineInbox {
 public:
  struct Submission {
    std::unique_ptr<Request> request;
    std::shared_ptr<TokenSink> sink;
  };

  explicit EngineInbox(int64_t max_waiting_requests)
      : max_waiting_requests_(max_waiting_requests) {}

  // Any thread. kUnavailable once Stop was called; kAlreadyExists for a live key;
  // kResourceExhausted when the requests waiting (here and in the scheduler's queue) reach
  // max_waiting_requests.
  absl::Status Push(Submission submission);
  // Any thread. Queues the cancel of live request `key` (LiveKey) and returns true; false, and
  // nothing queued, when no such request is live.
  bool Cancel(std::string key);
  // Any thread. Refuses new submissions from now on; the engine stops at `drain_deadline` or
  // once it has no work. The first call sets the deadline.
  void Stop(Clock::time_point drain_deadline);
  // Any thread. Queues a prefix-cache reset; `done` runs on the engine thread with its result.
  void ResetPrefixCache(std::function<void(absl::Status)> done);
  // Submissions not yet taken (for stats).
  int64_t num_pending() const;

  // --- Engine thread ---
  // True when the loop must end: stopping, and the drain deadline has passed or the engine has
  // no work left (`has_work`) and nothing is pending.
  bool ShouldExit(Clock::time_point now, bool has_work) const;
  struct Taken {
    std::vector<Submission> submissions;
    std::vector<std::string> cancels;
    std::vector<std::function<void(absl::Status)>> cache_resets;
  };
  Taken Take();
  // Sleeps until something is pushed, cancelled or stopped, or `timeout` passes.
  void Wait(std::chrono::milliseconds timeout);
  // The scheduler's count of queued (never scheduled) requests, which the queue bound includes.
  void set_num_queued(int64_t num_queued);
  // The request of `key` is done: its owner may use the id again.
  void Release(const std::string& key);
  // At shutdown: every pending submission, their ids released.
  std::vector<Submission> TakeAllPending();

 private:
  const int64_t max_waiting_requests_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Submission> pending_;
  std::vector<std::string> cancels_;
  std::vector<std::function<void(absl::Status)>> cache_resets_;
  std::unordered_set<std::string> live_keys_;  // Submitted and not yet done.
  int64_t num_queued_ = 0;                     // Published by the engine thread.
  bool stopping_ = false;
  Clock::time_point drain_deadline_{};
};

}  // namespace iquest
