#include "tools/bench/metrics_scrape.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace iquest {
namespace {

// Closes the descriptor on every return path.
struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) close(fd);
  }
};

absl::StatusOr<int> Connect(const std::string& host, const std::string& port, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  timeval timeout{};
  timeout.tv_sec = static_cast<time_t>(timeout_s);
  timeout.tv_usec = static_cast<suseconds_t>((timeout_s - std::floor(timeout_s)) * 1e6);
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port));
  return fd;
}

// The series name and the value of `le` (if any) of a sample line's "name{labels}" part.
bool SplitSeries(absl::string_view series, absl::string_view* name, absl::string_view* le) {
  const size_t brace = series.find('{');
  *name = series.substr(0, brace);
  *le = {};
  if (brace == absl::string_view::npos) return true;
  if (series.back() != '}') return false;
  const size_t at = series.find("le=\"", brace);
  if (at == absl::string_view::npos) return true;
  const size_t begin = at + 4;
  const size_t end = series.find('"', begin);
  if (end == absl::string_view::npos) return false;
  *le = series.substr(begin, end - begin);
  return true;
}

bool ParseBound(absl::string_view text, double* bound) {
  if (text == "+Inf") {
    *bound = std::numeric_limits<double>::infinity();
    return true;
  }
  return absl::SimpleAtod(text, bound);
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& target, const std::string& path,
                                    double timeout_s) {
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()) {
    return absl::InvalidArgumentError(absl::StrCat("want host:port, got \"", target, "\""));
  }
  std::string host = target.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:9090
  }
  Socket socket;
  {
    absl::StatusOr<int> fd = Connect(host, target.substr(colon + 1), timeout_s);
    if (!fd.ok()) return fd.status();
    socket.fd = *fd;
  }
  // HTTP/1.0: the server closes the connection after the body, so no chunked encoding.
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", target, "\r\n\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(socket.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send to ", target, " failed"));
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[1 << 14];
  while (true) {
    const ssize_t n = recv(socket.fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) return absl::UnavailableError(absl::StrCat("read from ", target, " failed"));
    response.append(buffer, static_cast<size_t>(n));
  }
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::InternalError(absl::StrCat("no HTTP answer from ", target));
  }
  const absl::string_view status_line =
      absl::string_view(response).substr(0, response.find("\r\n"));
  const std::vector<absl::string_view> words = absl::StrSplit(status_line, ' ');
  if (words.size() < 2 || words[1] != "200") {
    return absl::InternalError(
        absl::StrCat("GET ", path, " from ", target, " answered \"", status_line, "\""));
  }
  return response.substr(header_end + 4);
}

absl::StatusOr<HistogramSnapshot> ParseHistogram(absl::string_view text, absl::string_view name) {
  const std::string bucket_name = absl::StrCat(name, "_bucket");
  const std::string sum_name = absl::StrCat(name, "_sum");
  const std::string count_name = absl::StrCat(name, "_count");
  std::map<double, double> buckets;  // le -> cumulative count, summed over label sets.
  HistogramSnapshot out;
  bool seen = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    // "series value [timestamp]"; label values here hold no spaces.
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 2) continue;
    absl::string_view series_name, le;
    if (!SplitSeries(fields[0], &series_name, &le)) continue;
    double value = 0;
    if (series_name != bucket_name && series_name != sum_name && series_name != count_name) {
      continue;
    }
    if (!absl::SimpleAtod(fields[1], &value)) {
      return absl::InvalidArgumentError(absl::StrCat("bad sample value in \"", line, "\""));
    }
    seen = true;
    if (series_name == sum_name) {
      out.sum += value;
    } else if (series_name == count_name) {
      out.count += value;
    } else {
      double bound = 0;
      if (!ParseBound(le, &bound)) {
        return absl::InvalidArgumentError(absl::StrCat("bad le in \"", line, "\""));
      }
      buckets[bound] += value;
    }
  }
  if (!seen) return absl::NotFoundError(absl::StrCat("no histogram ", name, " in the metrics"));
  out.buckets.assign(buckets.begin(), buckets.end());
  return out;
}

HistogramSnapshot Subtract(const HistogramSnapshot& after, const HistogramSnapshot& before) {
  HistogramSnapshot out = after;
  out.sum -= before.sum;
  out.count -= before.count;
  for (size_t i = 0; i < out.buckets.size() && i < before.buckets.size(); ++i) {
    out.buckets[i].second -= before.buckets[i].second;
  }
  return out;
}

double HistogramQuantile(const HistogramSnapshot& histogram, double q) {
  const auto& buckets = histogram.buckets;
  if (buckets.empty() || !std::isinf(buckets.back().first)) return 0;
  const double total = buckets.back().second;
  if (total <= 0) return 0;
  const double rank = q * total;
  size_t i = 0;
  while (i + 1 < buckets.size() && buckets[i].second < rank) ++i;
  if (std::isinf(buckets[i].first)) return i == 0 ? 0 : buckets[i - 1].first;
  // The first bucket starts at 0 (all our histograms observe non-negative values).
  const double lower = i == 0 ? 0 : buckets[i - 1].first;
  const double below = i == 0 ? 0 : buckets[i - 1].second;
  const double in_bucket = buckets[i].second - below;
  if (in_bucket <= 0) return buckets[i].first;
  return lower + (buckets[i].first - lower) * (rank - below) / in_bucket;
}

LatencySummary SummarizeHistogramMs(const HistogramSnapshot& histogram) {
  LatencySummary s;
  s.count = static_cast<int64_t>(std::llround(histogram.count));
  if (s.count == 0) return s;
  s.mean = 1e3 * histogram.sum / histogram.count;
  s.p50 = 1e3 * HistogramQuantile(histogram, 0.50);
  s.p90 = 1e3 * HistogramQuantile(histogram, 0.90);
  s.p99 = 1e3 * HistogramQuantile(histogram, 0.99);
  return s;
}

}  // namespace iquest
