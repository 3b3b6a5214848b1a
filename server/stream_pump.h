// StreamPump: the one thread that turns engine outputs into responses and starts their writes.
//
// DESIGN §5: the engine thread only hands outputs over. A sink's OnOutput appends the output to its
// stream under the stream's own mutex and, when the stream is not already waiting here, schedules
// it: one push per stream per burst of outputs, however many streams or outputs a step has. Proto
// building, metrics and StartWrite then run on this thread (and on gRPC's threads, which start the
// next queued write in OnWriteDone), so the engine step does not grow with the number of streams.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace iquest {

class StreamPump {
 public:
  // What the pump serves. Drain runs on the pump thread only, so a stream's outputs are drained
  // in the order they were scheduled and never by two threads at once.
  class Stream {
   public:
    virtual ~Stream() = default;
    virtual void Drain() = 0;
  };

  StreamPump();
  // Drains every stream still scheduled, then joins the thread. Schedule must not be called
  // during or after destruction (the engine that calls it is gone first).
  ~StreamPump();

  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  // Thread-safe. The caller keeps its own "already scheduled" flag; scheduling a stream twice
  // drains it twice, which is harmless (the second Drain finds nothing).
  void Schedule(std::shared_ptr<Stream> stream);

 private:
  void Run();

  std::mutex mutex_;
  std::condition_variable ready_cv_;
  std::deque<std::shared_ptr<Stream>> ready_;  // Guarded by mutex_.
  bool stopping_ = false;                      // Guarded by mutex_.
  std::thread thread_;                         // Last: starts once the rest exists.
};

}  // namespace iquest
