#include "engine/mask_worker.h"

#include "common/check.h"

namespace iquest {

MaskWorker::MaskWorker() : thread_([this] { Run(); }) {}

MaskWorker::~MaskWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MaskWorker::Start(Job job) {
  CHECK(!pending_) << "one mask job at a time";
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    has_job_ = true;
  }
  pending_ = true;
  cv_.notify_all();
}

std::vector<TokenConstraint> MaskWorker::Take() {
  CHECK(pending_) << "Take without Start";
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return has_result_; });
  has_result_ = false;
  pending_ = false;
  return std::move(result_);
}

void MaskWorker::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return has_job_ || stop_; });
    if (stop_) return;
    Job job = std::move(job_);
    has_job_ = false;
    lock.unlock();
    std::vector<TokenConstraint> result = job();
    lock.lock();
    result_ = std::move(result);
    has_result_ = true;
    cv_.notify_all();
  }
}

}  // namespace iquest
