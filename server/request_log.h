// The one log line each request gets, as key=value (the default, like every other line) or as
// a JSON object (--request-log-format json) for log pipelines that parse JSON.
#pragma once

#include <string>

#include "engine/engine.h"

namespace iquest {

struct RequestLogEntry {
  std::string request_id;
  int code = 0;  // gRPC status code.
  std::string tenant;
  int32_t priority = 0;
  GenerationOutput last;  // The request's final output (usage, timings, finish reason).
};

// request_id and tenant are client-chosen: each is logged cut to this many bytes (then
// "...(N bytes)") and escaped (key=value quoting, or JSON's).
inline constexpr size_t kMaxLoggedStringBytes = 128;

void LogRequest(const RequestLogEntry& entry, bool json);

}  // namespace iquest
