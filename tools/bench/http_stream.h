// One streaming /v1/completions request of iquest-bench's `--api http` mode, on a blocking
// connection taken from (and returned to) a small keep-alive pool, as an OpenAI client with
// connection pooling sends it. Each SSE event is one engine output: TTFT is the first event with
// text, ITL the gaps between them; tokens come from the final usage chunk.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "iquest/serve/v1/generation.pb.h"
#include "tools/bench/bench_stats.h"

namespace iquest {

class HttpStreamClient {
 public:
  // `target`: host:port of the HTTP API; `bearer_token` may be empty.
  HttpStreamClient(std::string target, std::string bearer_token);
  ~HttpStreamClient();

  // Blocks until the stream ends; fills `record` as the gRPC reactor does. With
  // `cancel_after_first_token`, closes the connection after the first text event.
  void Run(const serve::v1::GenerateRequest& request, bool cancel_after_first_token,
           RequestRecord& record);

 private:
  struct Conn;
  std::unique_ptr<Conn> Take();
  void Give(std::unique_ptr<Conn> conn);

  std::string host_;
  std::string port_;
  std::string bearer_token_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Conn>> idle_;  // Guarded by mutex_.
};

}  // namespace iquest
