#include "engine/engine_inbox.h"

#include "absl/strings/str_cat.h"

namespace iquest {

absl::Status EngineInbox::Push(Submission submission) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  const Request& request = *submission.request;
  if (live_keys_.contains(request.live_key)) {
    return absl::AlreadyExistsError(absl::StrCat("request_id '", request.request_id, "' is live"));
  }
  if (num_queued_ + static_cast<int64_t>(pending_.size()) >= max_waiting_requests_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full (", max_waiting_requests_, " waiting requests)"));
  }
  live_keys_.insert(request.live_key);
  pending_.push_back(std::move(submission));
  wake_.notify_one();
  return absl::OkStatus();
}

bool EngineInbox::Cancel(std::string key) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!live_keys_.contains(key)) return false;
  cancels_.push_back(std::move(key));
  wake_.notify_one();
  return true;
}

void EngineInbox::ResetPrefixCache(std::function<void(absl::Status)> done) {
  std::lock_guard<std::mutex> lock(mutex_);
  cache_resets_.push_back(std::move(done));
  wake_.notify_one();
}

void EngineInbox::Stop(Clock::time_point drain_deadline) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!stopping_) {
    stopping_ = true;
    drain_deadline_ = drain_deadline;
  }
  wake_.notify_one();
}

int64_t EngineInbox::num_pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(pending_.size());
}

bool EngineInbox::ShouldExit(Clock::time_point now, bool has_work) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_ && (now >= drain_deadline_ || (!has_work && pending_.empty()));
}

EngineInbox::Taken EngineInbox::Take() {
  std::lock_guard<std::mutex> lock(mutex_);
  Taken taken;
  taken.submissions.swap(pending_);
  taken.cancels.swap(cancels_);
  taken.cache_resets.swap(cache_resets_);
  // They join the scheduler's queue next: count them there now, so that a Push racing with the
  // hand-over cannot overshoot the bound that Scheduler::AddRequest enforces.
  num_queued_ += static_cast<int64_t>(taken.submissions.size());
  return taken;
}

void EngineInbox::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait_for(lock, timeout, [&] {
    return !pending_.empty() || !cancels_.empty() || !cache_resets_.empty() || stopping_;
  });
}

void EngineInbox::set_num_queued(int64_t num_queued) {
  std::lock_guard<std::mutex> lock(mutex_);
  num_queued_ = num_queued;
}

void EngineInbox::Release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  live_keys_.erase(key);
}

std::vector<EngineInbox::Submission> EngineInbox::TakeAllPending() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Submission> out;
  out.swap(pending_);
  for (const Submission& s : out) live_keys_.erase(s.request->live_key);
  return out;
}

}  // namespace iquest
