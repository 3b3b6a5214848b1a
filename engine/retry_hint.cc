#include "engine/retry_hint.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace iquest {

void DrainRate::Observe(Clock::time_point now, int64_t num_finished) {
  if (!started_) {
    started_ = true;
    last_time_ = now;
    last_finished_ = num_finished;
    return;
  }
  const double dt = std::chrono::duration<double>(now - last_time_).count();
  if (dt < 0.05) return;  // Too short to measure; the next observation covers it.
  const double instant = static_cast<double>(num_finished - last_finished_) / dt;
  // The weight of the new interval grows with its length: a quiet second counts as one.
  const double weight = 1.0 - std::exp(-dt / time_constant_s_);
  per_second_ += weight * (instant - per_second_);
  last_time_ = now;
  last_finished_ = num_finished;
}

int64_t RetryAfterMs(int64_t num_waiting, double finished_per_second, double uniform) {
  double ms = static_cast<double>(kDefaultRetryAfterMs);
  if (finished_per_second > 0) {
    ms = 1000.0 * static_cast<double>(num_waiting + 1) / finished_per_second;
  }
  ms *= 0.8 + 0.4 * std::clamp(uniform, 0.0, 1.0);
  return std::clamp(static_cast<int64_t>(std::llround(ms)), kMinRetryAfterMs, kMaxRetryAfterMs);
}

}  // namespace iquest
