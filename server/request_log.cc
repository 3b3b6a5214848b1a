#include "server/request_log.h"

#include <chrono>
#include <cstdio>

#include "absl/status/status.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace iquest {
namespace {

double Millis(Clock::time_point from, Clock::time_point to) {
  if (from == Clock::time_point{} || to == Clock::time_point{}) return 0.0;
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace

void LogRequest(const RequestLogEntry& e, bool json) {
  const RequestTimings& t = e.last.timings;
  // Client-chosen strings, bounded: a refused request may carry a request_id of megabytes.
  const std::string request_id = Truncated(e.request_id, kMaxLoggedStringBytes);
  const std::string tenant = Truncated(e.tenant, kMaxLoggedStringBytes);
  const std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(e.code));
  if (!json) {
    LOG(INFO) << "event=request" << Kv("request_id", request_id) << Kv("code", code)
              << Kv("finish_reason", FinishReasonName(e.last.finish_reason))
              << Kv("prompt_tokens", e.last.usage.prompt_tokens)
              << Kv("completion_tokens", e.last.usage.completion_tokens)
              << Kv("cached_tokens", e.last.usage.cached_tokens)
              << Kv("queue_ms", Millis(t.arrival, t.first_scheduled))
              << Kv("ttft_ms", Millis(t.arrival, t.first_token))
              << Kv("e2e_ms", Millis(t.arrival, t.finished)) << Kv("tenant", tenant)
              << Kv("priority", e.priority);
    return;
  }
  if (MinLogLevel() > LogLevel::kInfo) return;
  const nlohmann::json line = {
      {"ts",
       std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
      {"level", "info"},
      {"event", "request"},
      {"request_id", request_id},
      {"code", code},
      {"finish_reason", FinishReasonName(e.last.finish_reason)},
      {"prompt_tokens", e.last.usage.prompt_tokens},
      {"completion_tokens", e.last.usage.completion_tokens},
      {"cached_tokens", e.last.usage.cached_tokens},
      {"queue_ms", Millis(t.arrival, t.first_scheduled)},
      {"ttft_ms", Millis(t.arrival, t.first_token)},
      {"e2e_ms", Millis(t.arrival, t.finished)},
      {"tenant", tenant},
      {"priority", e.priority},
  };
  // Strings are client-chosen: dump() escapes them, and replaces invalid UTF-8 instead of
  // throwing.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace iquest
