// One line per event on stderr, `key=value` style, for Kubernetes log collectors:
//   LOG(INFO) << "event=model_loaded" << Kv("layers", 32) << Kv("path", dir);
// Nothing is logged per token or inside kernels; metrics cover that.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace iquest {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below this level are dropped. Default: kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

namespace internal {

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  template <typename T>
  LogMessage& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

struct LogVoidify {
  void operator&(const LogMessage&) {}
};

}  // namespace internal

// " key=value", quoting the value when it holds spaces, quotes, '=' or control bytes. Inside
// quotes '"' and '\\' are backslashed, '\n' '\r' '\t' written as such and every other control
// byte (and DEL) as \xNN, so no value can break the line or reach a terminal raw.
std::string Kv(std::string_view key, std::string_view value);
std::string Kv(std::string_view key, const char* value);
// A client-supplied string bounded for a log line: at most `max_bytes` of it (cut at a UTF-8
// boundary), then "...(N bytes)" naming the full length when it was longer.
std::string Truncated(std::string_view value, size_t max_bytes);

template <typename T>
std::string Kv(std::string_view key, const T& value) {
  std::ostringstream out;
  out << value;
  return Kv(key, std::string_view(out.str()));
}

}  // namespace iquest

#define IQ_LOG_LEVEL_DEBUG ::iquest::LogLevel::kDebug
#define IQ_LOG_LEVEL_INFO ::iquest::LogLevel::kInfo
#define IQ_LOG_LEVEL_WARNING ::iquest::LogLevel::kWarning
#define IQ_LOG_LEVEL_ERROR ::iquest::LogLevel::kError

#define LOG(severity)                                 \
  (IQ_LOG_LEVEL_##severity < ::iquest::MinLogLevel()) \
      ? (void)0                                       \
      : ::iquest::internal::LogVoidify() &            \
            ::iquest::internal::LogMessage(IQ_LOG_LEVEL_##severity, __FILE__, __LINE__)
