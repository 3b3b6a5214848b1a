// ThreadPool: the CPU backend's one pool of worker threads (DESIGN §5: nothing else spawns).
//
// ParallelFor splits [0, num_tasks) into one contiguous range per thread; the calling thread
// takes range 0, so a pool of N threads starts N - 1 workers. Ops call it ~100 times per model
// step, so dispatch must cost microseconds: workers spin on an epoch counter for a short while
// before sleeping on a condition variable, and nothing is allocated per call.
//
// Not reentrant, and used by one caller thread at a time (the engine thread owns the backend).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace iquest::cpu {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the caller.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(begin, end) over a partition of [0, num_tasks) into at most num_threads contiguous,
  // non-empty ranges of near-equal size, and returns when all have finished.
  // `fn` is called by reference, never copied: dispatch allocates nothing.
  template <typename Fn>
  void ParallelFor(int64_t num_tasks, Fn&& fn) {
    Run(num_tasks, &fn, [](void* context, int64_t begin, int64_t end) {
      (*static_cast<std::remove_reference_t<Fn>*>(context))(begin, end);
    });
  }

  // Runs fn(begin, end) over [0, num_tasks) in chunks that the threads take in order from a
  // shared counter until none is left ("guided" scheduling): each chunk is 1 / (2 x threads) of
  // what remains, rounded up to a multiple of `granule` (the last may be shorter), so chunks
  // start large and shrink toward the end. For long ops: a thread that falls behind (preempted
  // by the host, slower to reach memory) takes fewer chunks instead of making everyone wait
  // for its fixed share, and the final wait is one small chunk. Measured on the 2-vCPU box,
  // batch-32 decode of the 1B-shaped model: with fixed halves the engine thread waited ~1.8 s
  // for its partner over 66 steps although both did the same work.
  template <typename Fn>
  void ParallelForGuided(int64_t num_tasks, int64_t granule, Fn&& fn) {
    if (num_tasks <= 0) return;
    const int64_t num_granules = (num_tasks + granule - 1) / granule;
    std::atomic<int64_t> next{0};  // In granules.
    const int64_t divisor = 2 * static_cast<int64_t>(num_threads_);
    ParallelFor(std::min<int64_t>(num_threads_, num_granules), [&](int64_t, int64_t) {
      int64_t begin = next.load(std::memory_order_relaxed);
      while (begin < num_granules) {
        const int64_t size = std::max<int64_t>(1, (num_granules - begin) / divisor);
        if (!next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed)) continue;
        fn(begin * granule, std::min(num_tasks, (begin + size) * granule));
        begin = next.load(std::memory_order_relaxed);
      }
    });
  }

 private:
  using RangeFn = void (*)(void* context, int64_t begin, int64_t end);
  void Run(int64_t num_tasks, void* context, RangeFn fn);
  void WorkerLoop(int worker_index);
  void RunRange(int thread_index);

  const int num_threads_;
  std::vector<std::thread> workers_;

  // The current job; written by the caller before the epoch is bumped.
  void* job_context_ = nullptr;
  RangeFn job_fn_ = nullptr;
  int64_t job_num_tasks_ = 0;
  int job_num_ranges_ = 0;

  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> pending_{0};  // Workers still running the current job.
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

// The number of CPUs this process may run on (sched_getaffinity), at least 1.
int AvailableCpus();

}  // namespace iquest::cpu
