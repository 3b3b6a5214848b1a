#include "server/stream_pump.h"

#include <utility>

namespace iquest {

StreamPump::StreamPump() : thread_([this] { Run(); }) {}

StreamPump::~StreamPump() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_cv_.notify_one();
  thread_.join();
}

void StreamPump::Schedule(std::shared_ptr<Stream> stream) {
  bool was_empty = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    was_empty = ready_.empty();
    ready_.push_back(std::move(stream));
  }
  // The pump waits only when the queue is empty, so only that transition needs a wake-up.
  if (was_empty) ready_cv_.notify_one();
}

void StreamPump::Run() {
  std::deque<std::shared_ptr<Stream>> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_cv_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
      if (ready_.empty()) return;  // Stopping, and nothing left to drain.
      batch.swap(ready_);
    }
    for (const std::shared_ptr<Stream>& stream : batch) stream->Drain();
    batch.clear();  // Drops the references outside the lock.
  }
}

}  // namespace iquest
