// The retry-after hint: DrainRate follows the finish rate it is shown, and RetryAfterMs turns a
// queue and a rate into a bounded, jittered wait.
#include "engine/retry_hint.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

namespace iquest {
namespace {

Clock::time_point At(double seconds) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
}

TEST(DrainRateTest, ConvergesToTheFinishRate) {
  DrainRate rate(/*time_constant_s=*/2.0);
  EXPECT_EQ(rate.per_second(), 0);
  // 5 requests a second for a minute, observed every 100 ms (one finishes every other
  // observation, so the smoothed rate ripples by about ±0.13 around 5).
  for (int i = 0; i <= 600; ++i) rate.Observe(At(i * 0.1), i / 2);
  EXPECT_NEAR(rate.per_second(), 5.0, 0.2);
  // Then nothing finishes: the rate decays towards 0 with the time constant.
  for (int i = 1; i <= 100; ++i) rate.Observe(At(60 + i * 0.1), 300);
  EXPECT_NEAR(rate.per_second(), 5.0 * std::exp(-10.0 / 2.0), 0.01);
}

TEST(DrainRateTest, IntervalsTooShortToMeasureAreFolded) {
  DrainRate rate(/*time_constant_s=*/1.0);
  rate.Observe(At(0), 0);
  rate.Observe(At(0.01), 100);  // 10 ms: skipped, counted in the next interval.
  EXPECT_EQ(rate.per_second(), 0);
  rate.Observe(At(10), 100);
  EXPECT_NEAR(rate.per_second(), 10.0, 0.01);  // 100 over 10 s, weight 1 - e^-10.
}

TEST(RetryAfterMsTest, IsTheQueueOverTheRateJitteredAndBounded) {
  // 9 waiting + the refused one at 4 per second: 2.5 s, from 2 s to 3 s with jitter.
  EXPECT_EQ(RetryAfterMs(9, 4.0, 0.5), 2500);
  EXPECT_EQ(RetryAfterMs(9, 4.0, 0.0), 2000);
  EXPECT_EQ(RetryAfterMs(9, 4.0, 0.999999), 3000);
  EXPECT_EQ(RetryAfterMs(0, 1000.0, 0.5), kMinRetryAfterMs);     // 1 ms, raised to the floor.
  EXPECT_EQ(RetryAfterMs(100000, 0.01, 0.5), kMaxRetryAfterMs);  // Days, capped.
  EXPECT_EQ(RetryAfterMs(5, 0.0, 0.5), kDefaultRetryAfterMs);    // No rate measured yet.
}

}  // namespace
}  // namespace iquest
