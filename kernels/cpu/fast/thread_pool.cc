#include "kernels/cpu/fast/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#include "common/check.h"

namespace iquest::cpu {
namespace {

// How a worker waits for the next job: PAUSE-spin for kSpinIterations (~40 us on the Zen 5
// box), then yield its CPU in a loop until kActiveWait has passed since the last job, then
// sleep on the condition variable. The active window has to outlast the serial work of one
// engine step (sampling, scheduling: a few ms at batch 32 with a 128k vocabulary): waking a
// sleeping worker costs far more than the spin. Measured on this VM (Firecracker, 2 vCPUs),
// batch-32 decode of the 1B-shaped model: with a 1 ms window the worker slept 2-3 times per
// step and started its share ~7 ms late after each sleep (2.5 s late in all over 66 steps).
// Yielding rather than spinning keeps an oversubscribed machine (tests beside other tests)
// usable.
constexpr int kSpinIterations = 2000;
constexpr std::chrono::milliseconds kActiveWait{20};
// Spin iterations before the caller, waiting for workers, starts yielding its CPU: when the
// machine is oversubscribed a worker may be waiting for exactly that CPU.
constexpr int kSpinBeforeYield = 2000;

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  CHECK_GE(num_threads, 1);
  workers_.reserve(static_cast<size_t>(num_threads - 1));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    epoch_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunRange(int thread_index) {
  if (thread_index >= job_num_ranges_) return;
  // Range i is [i * n / r, (i + 1) * n / r): sizes differ by at most one task.
  const int64_t begin = job_num_tasks_ * thread_index / job_num_ranges_;
  const int64_t end = job_num_tasks_ * (thread_index + 1) / job_num_ranges_;
  job_fn_(job_context_, begin, end);
}

void ThreadPool::Run(int64_t num_tasks, void* context, RangeFn fn) {
  if (num_tasks <= 0) return;
  const int num_ranges = static_cast<int>(std::min<int64_t>(num_threads_, num_tasks));
  if (num_ranges == 1) {
    fn(context, 0, num_tasks);
    return;
  }
  job_context_ = context;
  job_fn_ = fn;
  job_num_tasks_ = num_tasks;
  job_num_ranges_ = num_ranges;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    // The lock orders the bump against a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mutex_);
    epoch_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  RunRange(0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinBeforeYield) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  job_fn_ = nullptr;
}

void ThreadPool::WorkerLoop(int worker_index) {
  uint64_t seen = 0;
  while (true) {
    auto changed = [&] { return epoch_.load(std::memory_order_acquire) != seen; };
    for (int spins = 0; !changed() && spins < kSpinIterations; ++spins) CpuRelax();
    if (!changed()) {
      const auto deadline = std::chrono::steady_clock::now() + kActiveWait;
      while (!changed() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    }
    if (!changed()) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, changed);
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    RunRange(worker_index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace iquest::cpu
