// StreamPump: every scheduled stream is drained, on the pump's one thread, in the order it was
// scheduled; streams scheduled before destruction are still drained.
#include "server/stream_pump.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace iquest {
namespace {

class CountingStream : public StreamPump::Stream {
 public:
  explicit CountingStream(int id, std::vector<int>* order, std::mutex* order_mutex)
      : id_(id), order_(order), order_mutex_(order_mutex) {}

  void Drain() override {
    const std::thread::id self = std::this_thread::get_id();
    {
      std::lock_guard<std::mutex> lock(*order_mutex_);
      order_->push_back(id_);
      threads_.push_back(self);
    }
    ++num_drains_;
  }

  int num_drains() const { return num_drains_.load(); }
  std::vector<std::thread::id> threads() const {
    std::lock_guard<std::mutex> lock(*order_mutex_);
    return threads_;
  }

 private:
  const int id_;
  std::vector<int>* order_;
  std::mutex* order_mutex_;
  std::vector<std::thread::id> threads_;
  std::atomic<int> num_drains_{0};
};

TEST(StreamPumpTest, DrainsEveryScheduleInOrderOnOneThread) {
  std::vector<int> order;
  std::mutex order_mutex;
  std::vector<std::shared_ptr<CountingStream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(std::make_shared<CountingStream>(i, &order, &order_mutex));
  }
  {
    StreamPump pump;
    for (int round = 0; round < 100; ++round) {
      for (const auto& s : streams) pump.Schedule(s);
    }
  }  // The destructor drains what is still queued.
  ASSERT_EQ(order.size(), 800u);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], static_cast<int>(i % 8));
  const std::thread::id pump_thread = streams[0]->threads()[0];
  EXPECT_NE(pump_thread, std::this_thread::get_id());
  for (const auto& s : streams) {
    EXPECT_EQ(s->num_drains(), 100);
    for (std::thread::id t : s->threads()) EXPECT_EQ(t, pump_thread);
  }
}

TEST(StreamPumpTest, SchedulesFromManyThreadsAreAllDrained) {
  std::vector<int> order;
  std::mutex order_mutex;
  auto stream = std::make_shared<CountingStream>(0, &order, &order_mutex);
  {
    StreamPump pump;
    std::vector<std::thread> producers;
    for (int t = 0; t < 4; ++t) {
      producers.emplace_back([&pump, &stream] {
        for (int i = 0; i < 1000; ++i) pump.Schedule(stream);
      });
    }
    for (std::thread& t : producers) t.join();
  }
  EXPECT_EQ(stream->num_drains(), 4000);
}

TEST(StreamPumpTest, ThePumpHoldsAStreamUntilItIsDrained) {
  std::vector<int> order;
  std::mutex order_mutex;
  std::weak_ptr<CountingStream> weak;
  {
    StreamPump pump;
    auto stream = std::make_shared<CountingStream>(7, &order, &order_mutex);
    weak = stream;
    pump.Schedule(std::move(stream));
  }
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(order, std::vector<int>{7});
}

}  // namespace
}  // namespace iquest
