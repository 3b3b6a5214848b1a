// The retry-after hint of a RESOURCE_EXHAUSTED refusal, from how fast the engine actually
// finishes requests: a refused client told "retry in 500 ms" by a server that clears one request
// every 10 s only comes back to be refused again.
#pragma once

#include <cstdint>

#include "scheduler/request.h"

namespace iquest {

// Requests finished per second, smoothed exponentially over about `time_constant_s`. Engine thread.
class DrainRate {
 public:
  explicit DrainRate(double time_constant_s = 10.0) : time_constant_s_(time_constant_s) {}

  // `num_finished`: requests finished so far (monotonic).
  void Observe(Clock::time_point now, int64_t num_finished);
  double per_second() const { return per_second_; }

 private:
  double time_constant_s_;
  bool started_ = false;
  Clock::time_point last_time_{};
  int64_t last_finished_ = 0;
  double per_second_ = 0;
};

inline constexpr int64_t kMinRetryAfterMs = 100;
inline constexpr int64_t kMaxRetryAfterMs = 30000;
// Before any request has finished (no rate known yet).
inline constexpr int64_t kDefaultRetryAfterMs = 1000;

// The time for the `num_waiting` queued requests (and the refused one) to drain at
// `finished_per_second`, in [kMinRetryAfterMs, kMaxRetryAfterMs], spread by ±20 % with
// `uniform` in [0, 1) so that refused clients do not all return in the same instant.
int64_t RetryAfterMs(int64_t num_waiting, double finished_per_second, double uniform);

}  // namespace iquest
