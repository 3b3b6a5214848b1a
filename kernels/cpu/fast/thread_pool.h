// ThreadPool: the CPU backend's one pool of worker threads (DESIGN §5: nothing else spawns).
//
// ParallelFor splits [0, num_tasks) into one contiguous range per thread; the calling thread
// takes range 0, so a pool of N threads starts N - 1 workers. Ops call it ~100 times per model
// step, so dispatch must cost microseconds: workers spin on an epoch counter for a short while
// before sleeping on a condition variable, and nothing is allocated per call.
//
// Not reentrant, and used by one caller thread at a time (the engine thread owns the backend).
#pragma once

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
