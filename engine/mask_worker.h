// MaskWorker: one long-lived helper thread of the engine that computes a step's structured-output
// masks while the engine thread runs the forward pass (a thread per step would cost a spawn each
// time). Start hands it one job; Take waits for the job's result. Engine thread only; at most one
// job at a time.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/constrained_decoding.h"

namespace iquest {

class MaskWorker {
 public:
  using Job = std::function<std::vector<TokenConstraint>()>;

  MaskWorker();
  ~MaskWorker();

  void Start(Job job);
  // The result of the job Start handed over; CHECKs that one was.
  std::vector<TokenConstraint> Take();
  bool busy() const { return pending_; }

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  Job job_;                              // Under mu_.
  std::vector<TokenConstraint> result_;  // Under mu_.
  bool has_job_ = false, has_result_ = false, stop_ = false;
  bool pending_ = false;  // Engine thread: a job was started and not yet taken.
  std::thread thread_;
};

}  // namespace iquest
