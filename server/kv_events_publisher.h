// KvEventsPublisher: the block manager's KV-cache events (scheduler/kv_events.h) on a ZeroMQ PUB
// socket, in the wire format vLLM publishes and llm-d's KV-cache indexer and Dynamo read:
//
//   multipart [topic, sequence (8 bytes, big-endian), payload]
//   payload = msgpack array [ts (float64 seconds), [event, ...], data_parallel_rank (0)]
//   event   = ["BlockStored", [hash], parent_hash | nil, [token ids], block_size, nil, medium]
//           | ["BlockRemoved", [hash], medium]
//           | ["AllBlocksCleared"]
//
// This is vLLM's array_like msgspec layout (v0.9 - v0.11, the one llm-d's decoder reads as a 2-
// or 3-element array); hashes are ExternalBlockHash's 63-bit integers; medium is "GPU" or
// "CPU". The endpoint is bound when it names a wildcard (tcp://*:5557) or ipc/inproc, else
// connected, as vLLM decides. The first batch is AllBlocksCleared: a subscriber starts empty.
//
// Publish never blocks the engine thread: batches go to a bounded queue drained by one thread;
// past the bound a batch is dropped, counted, and its sequence number skipped, so subscribers
// see the gap.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/kv_events.h"

namespace iquest {

// One payload (the msgpack EventBatch above).
std::string EncodeKvEventBatch(double ts_seconds, const std::vector<KvCacheEvent>& events,
                               int64_t block_size, const std::string& medium);

class KvEventsPublisher {
 public:
  static absl::StatusOr<std::unique_ptr<KvEventsPublisher>> Start(const std::string& endpoint,
                                                                  const std::string& topic,
                                                                  int64_t block_size,
                                                                  std::string medium);
  ~KvEventsPublisher();  // Sends what is queued (for up to 1 s), then closes.

  // Any thread; never blocks.
  void Publish(std::vector<KvCacheEvent> events);
  int64_t num_dropped() const;

 private:
  KvEventsPublisher(void* context, void* socket, std::string topic, int64_t block_size,
                    std::string medium);
  void Run();

  struct Batch {
    uint64_t sequence;
    double ts_seconds;
    std::vector<KvCacheEvent> events;
  };
  static constexpr size_t kMaxQueuedBatches = 100000;

  void* context_;
  void* socket_;
  const std::string topic_;
  const int64_t block_size_;
  const std::string medium_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Batch> queue_;     // Guarded by mutex_.
  uint64_t next_sequence_ = 0;  // Guarded by mutex_.
  int64_t num_dropped_ = 0;     // Guarded by mutex_.
  bool stopping_ = false;       // Guarded by mutex_.
  std::thread thread_;
};

}  // namespace iquest
