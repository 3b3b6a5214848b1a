// Arrival pacing, per-stream reactors and bookkeeping for iquest-bench.
#include "tools/bench/bench_runner.h"

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "iquest/serve/v1/generation.grpc.pb.h"
#include "tools/bench/http_stream.h"

namespace iquest {
namespace {

namespace v1 = iquest::serve::v1;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Counts open streams so the sender can wait for a free slot or for all of them to end.
class InFlight {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
  }
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    --count_;
    cv_.notify_all();
  }
  // True when fewer than `limit` (0: no limit) are open before `deadline`.
  bool WaitBelow(int64_t limit, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return limit == 0 || cv_.wait_until(lock, deadline, [&] { return count_ < limit; });
  }
  void WaitAll() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t count_ = 0;
};

// One Generate stream. Runs on gRPC's callback threads and deletes itself when done; it writes
// only its own record, which the sender reads after InFlight::WaitAll.
class StreamReactor : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  StreamReactor(InFlight& in_flight, RequestRecord& record, bool cancel_after_first_token)
      : in_flight_(in_flight), record_(record), cancel_(cancel_after_first_token) {}

  grpc::ClientContext& context() { return context_; }

  void Start(v1::Generation::Stub& stub, v1::GenerateRequest request) {
    request_ = std::move(request);
    in_flight_.Add();
    start_ = Clock::now();
    stub.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended; OnDone follows.
    if (response_.token_ids_size() > 0) {
      const double now = SecondsSince(start_);
      if (record_.ttft_s < 0) {
        record_.ttft_s = now;
      } else {
        record_.itl_s.push_back(now - last_token_s_);
      }
      last_token_s_ = now;
      record_.output_tokens += response_.token_ids_size();
      if (cancel_ && !record_.cancelled) {
        record_.cancelled = true;
        context_.TryCancel();
      }
    }
    if (response_.has_usage()) record_.prompt_tokens = response_.usage().prompt_tokens();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.e2e_s = SecondsSince(start_);
    // A stream we cancelled ends CANCELLED (or OK if it finished first); neither is an error.
    if (!status.ok() && !record_.cancelled)
      record_.error_code = StatusCodeName(status.error_code());
    InFlight& in_flight = in_flight_;
    delete this;
    in_flight.Done();
  }

 private:
  InFlight& in_flight_;
  RequestRecord& record_;
  const bool cancel_;
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  Clock::time_point start_;
  double last_token_s_ = 0;
};

// Builds each request's input: random token ids, or the lines of the prompt file in turn.
class PromptSource {
 public:
  static absl::StatusOr<PromptSource> Create(const BenchConfig& config,
                                             const Connection& connection) {
    PromptSource source(config);
    if (!config.prompt_file.empty()) {
      std::ifstream in(config.prompt_file);
      if (!in)
        return absl::InvalidArgumentError("--prompt-file: cannot read " + config.prompt_file);
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) source.lines_.push_back(line);
      }
      if (source.lines_.empty()) return absl::InvalidArgumentError("--prompt-file has no prompts");
    } else if (source.vocab_size_ == 0) {
      ASSIGN_OR_RETURN(source.vocab_size_, AskVocabSize(connection));
    }
    return source;
  }

  v1::GenerateRequest Next(int64_t index) {
    v1::GenerateRequest request;
    v1::SamplingParams& sampling = *request.mutable_sampling();
    sampling.set_max_tokens(static_cast<int32_t>(output_len_));
    sampling.set_ignore_eos(true);
    if (!lines_.empty()) {
      request.set_text(lines_[static_cast<size_t>(index) % lines_.size()]);
      return request;
    }
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab_size_ - 1));
    auto* ids = request.mutable_token_ids()->mutable_ids();
    for (int64_t i = 0; i < input_len_; ++i) ids->Add(token(rng_));
    return request;
  }

 private:
  explicit PromptSource(const BenchConfig& config)
      : rng_(config.seed),
        input_len_(config.input_len),
        output_len_(config.output_len),
        vocab_size_(config.vocab_size) {}

  static absl::StatusOr<int64_t> AskVocabSize(const Connection& connection) {
    auto stub = v1::Generation::NewStub(connection.channel());
    grpc::ClientContext context;
    connection.Prepare(context);
    v1::GetModelInfoResponse info;
    const grpc::Status status = stub->GetModelInfo(&context, {}, &info);
    if (!status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("GetModelInfo (for the vocabulary size; or pass --vocab-size): ",
                       DescribeStatus(status)));
    }
    if (info.vocab_size() <= 0) return absl::InternalError("GetModelInfo: vocab_size <= 0");
    return info.vocab_size();
  }

  std::mt19937_64 rng_;
  int64_t input_len_;
  int64_t output_len_;
  int64_t vocab_size_;
  std::vector<std::string> lines_;
};

absl::Status Validate(const BenchConfig& config) {
  if (config.concurrency == 0 && config.request_rate == 0) {
    return absl::InvalidArgumentError("give --concurrency or --request-rate (or both)");
  }
  if (config.num_requests <= 0) return absl::InvalidArgumentError("--num-requests must be > 0");
  if (config.api != "grpc" && config.api != "http") {
    return absl::InvalidArgumentError("--api must be grpc or http");
  }
  if (config.api == "http" && config.concurrency == 0) {
    return absl::InvalidArgumentError("--api http needs --concurrency (one thread per stream)");
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// Paces and sends requests; owns the stubs, the in-flight count and the run's deadline.
class Sender {
 public:
  Sender(const BenchConfig& config, const Connection& connection, PromptSource& source)
      : config_(config),
        connection_(connection),
        source_(source),
        arrival_rng_(config.seed ^ 0x9e3779b97f4a7c15ULL),
        cancel_rng_(config.seed + 1),
        http_(config.http_target, /*bearer_token=*/"") {
    const auto budget = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(config.max_duration_s));
    run_deadline_ = Clock::now() + budget;
    rpc_deadline_ = std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(budget);
    for (int i = 0; i < connection.num_channels(); ++i) {
      stubs_.push_back(v1::Generation::NewStub(connection.channel(i)));
    }
  }

  // Sends requests [begin, end) into records[begin, end) and waits until all have ended.
  // Returns how many were sent before the run's deadline.
  int64_t Send(int64_t begin, int64_t end, std::vector<RequestRecord>& records) {
    const Clock::time_point phase_start = Clock::now();
    std::exponential_distribution<double> gap(config_.request_rate > 0 ? config_.request_rate : 1);
    std::bernoulli_distribution cancel(config_.cancel_fraction);
    double arrival_s = 0;
    int64_t sent = 0;
    for (int64_t i = begin; i < end; ++i) {
      // The first request goes at once and each later one an exponential gap after the previous
      // arrival (as in vLLM); arrival times do not shift when a full concurrency bound delays a
      // send.
      if (config_.request_rate > 0) {
        const auto arrival = phase_start + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(arrival_s));
        std::this_thread::sleep_until(std::min(arrival, run_deadline_));
        arrival_s += gap(arrival_rng_);
      }
      if (!in_flight_.WaitBelow(config_.concurrency, run_deadline_) ||
          Clock::now() >= run_deadline_) {
        break;
      }
      if (config_.api == "http") {
        in_flight_.Add();
        std::thread([this, &record = records[static_cast<size_t>(i)], request = source_.Next(i),
                     cancel_it = cancel(cancel_rng_)] {
          http_.Run(request, cancel_it, record);
          in_flight_.Done();
        }).detach();
        ++sent;
        continue;
      }
      auto* reactor =
          new StreamReactor(in_flight_, records[static_cast<size_t>(i)], cancel(cancel_rng_));
      connection_.Prepare(reactor->context());
      if (reactor->context().deadline() > rpc_deadline_) {
        reactor->context().set_deadline(rpc_deadline_);
      }
      reactor->Start(*stubs_[static_cast<size_t>(i) % stubs_.size()], source_.Next(i));
      ++sent;
    }
    in_flight_.WaitAll();
    return sent;
  }

 private:
  const BenchConfig& config_;
  const Connection& connection_;
  PromptSource& source_;
  std::vector<std::unique_ptr<v1::Generation::Stub>> stubs_;
  InFlight in_flight_;
  std::mt19937_64 arrival_rng_;
  std::mt19937_64 cancel_rng_;
  Clock::time_point run_deadline_;
  std::chrono::system_clock::time_point rpc_deadline_;
  HttpStreamClient http_;
};

}  // namespace

absl::StatusOr<BenchResult> RunBench(const BenchConfig& config, const Connection& connection,
                                     const std::function<void()>& before_measured) {
  RETURN_IF_ERROR(Validate(config));
  ASSIGN_OR_RETURN(PromptSource source, PromptSource::Create(config, connection));
  const int64_t total = config.warmup + config.num_requests;
  std::vector<RequestRecord> records(static_cast<size_t>(total));
  Sender sender(config, connection, source);
  sender.Send(0, config.warmup, records);
  if (before_measured) before_measured();
  const Clock::time_point start = Clock::now();
  const int64_t sent = sender.Send(config.warmup, total, records);
  BenchResult result;
  result.duration_s = SecondsSince(start);
  result.num_not_sent = config.num_requests - sent;
  result.records.assign(records.begin() + config.warmup, records.begin() + config.warmup + sent);
  return result;
}

}  // namespace iquest
