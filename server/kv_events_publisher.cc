#include "server/kv_events_publisher.h"

#include <zmq.h>

#include <chrono>
#include <msgpack.hpp>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/log.h"

namespace iquest {
namespace {

void PackString(msgpack::packer<msgpack::sbuffer>& pk, const std::string& s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool BindsRatherThanConnects(const std::string& endpoint) {
  return endpoint.find('*') != std::string::npos || endpoint.find("::") != std::string::npos ||
         endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0;
}

}  // namespace

std::string EncodeKvEventBatch(double ts_seconds, const std::vector<KvCacheEvent>& events,
                               int64_t block_size, const std::string& medium) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(&buffer);
  pk.pack_array(3);
  pk.pack_double(ts_seconds);
  pk.pack_array(static_cast<uint32_t>(events.size()));
  for (const KvCacheEvent& e : events) {
    switch (e.kind) {
      case KvCacheEvent::Kind::kStored:
        pk.pack_array(7);
        PackString(pk, "BlockStored");
        pk.pack_array(1);
        pk.pack_uint64(e.block_hash);
        if (e.parent_block_hash) {
          pk.pack_uint64(*e.parent_block_hash);
        } else {
          pk.pack_nil();
        }
        pk.pack_array(static_cast<uint32_t>(e.token_ids.size()));
        for (int32_t id : e.token_ids) pk.pack_int32(id);
        pk.pack_int64(block_size);
        pk.pack_nil();  // lora_id: no adapters.
        PackString(pk, medium);
        break;
      case KvCacheEvent::Kind::kRemoved:
        pk.pack_array(3);
        PackString(pk, "BlockRemoved");
        pk.pack_array(1);
        pk.pack_uint64(e.block_hash);
        PackString(pk, medium);
        break;
      case KvCacheEvent::Kind::kAllCleared:
        pk.pack_array(1);
        PackString(pk, "AllBlocksCleared");
        break;
    }
  }
  pk.pack_int32(0);  // data_parallel_rank: one engine per process.
  return std::string(buffer.data(), buffer.size());
}

absl::StatusOr<std::unique_ptr<KvEventsPublisher>> KvEventsPublisher::Start(
    const std::string& endpoint, const std::string& topic, int64_t block_size, std::string medium) {
  void* context = zmq_ctx_new();
  if (context == nullptr) return absl::InternalError("kv events: zmq_ctx_new failed");
  void* socket = zmq_socket(context, ZMQ_PUB);
  const int hwm = 100000;
  const int linger_ms = 1000;
  int rc = socket == nullptr ? -1 : zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof(hwm));
  if (rc == 0) rc = zmq_setsockopt(socket, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
  if (rc == 0) {
    rc = BindsRatherThanConnects(endpoint) ? zmq_bind(socket, endpoint.c_str())
                                           : zmq_connect(socket, endpoint.c_str());
  }
  if (rc != 0) {
    const std::string error = zmq_strerror(zmq_errno());
    if (socket != nullptr) zmq_close(socket);
    zmq_ctx_term(context);
    return absl::InvalidArgumentError(absl::StrCat("--kv-events-endpoint ", endpoint, ": ", error));
  }
  std::unique_ptr<KvEventsPublisher> publisher(
      new KvEventsPublisher(context, socket, topic, block_size, std::move(medium)));
  KvCacheEvent cleared;
  cleared.kind = KvCacheEvent::Kind::kAllCleared;
  publisher->Publish({cleared});
  return publisher;
}

KvEventsPublisher::KvEventsPublisher(void* context, void* socket, std::string topic,
                                     int64_t block_size, std::string medium)
    : context_(context),
      socket_(socket),
      topic_(std::move(topic)),
      block_size_(block_size),
      medium_(std::move(medium)),
      thread_([this] { Run(); }) {}

KvEventsPublisher::~KvEventsPublisher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  zmq_close(socket_);  // ZMQ_LINGER bounds how long queued messages may still take.
  zmq_ctx_term(context_);
}

void KvEventsPublisher::Publish(std::vector<KvCacheEvent> events) {
  if (events.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t sequence = next_sequence_++;
    if (queue_.size() >= kMaxQueuedBatches) {
      ++num_dropped_;
      return;
    }
    queue_.push_back({sequence, NowSeconds(), std::move(events)});
  }
  wake_.notify_one();
}

int64_t KvEventsPublisher::num_dropped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return num_dropped_;
}

void KvEventsPublisher::Run() {
  while (true) {
    Batch batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // Stopping, and everything is sent.
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    const std::string payload =
        EncodeKvEventBatch(batch.ts_seconds, batch.events, block_size_, medium_);
    unsigned char sequence[8];
    for (int i = 0; i < 8; ++i)
      sequence[i] = static_cast<unsigned char>(batch.sequence >> (56 - 8 * i));
    // PUB never blocks on send: past the high-water mark ZeroMQ drops for that subscriber.
    if (zmq_send(socket_, topic_.data(), topic_.size(), ZMQ_SNDMORE) < 0 ||
        zmq_send(socket_, sequence, sizeof(sequence), ZMQ_SNDMORE) < 0 ||
        zmq_send(socket_, payload.data(), payload.size(), 0) < 0) {
      LOG(WARNING) << "event=kv_events_send_failed" << Kv("error", zmq_strerror(zmq_errno()));
    }
  }
}

}  // namespace iquest
