// iquest-bench's metrics scrape: the Prometheus text parser, the difference of two scrapes,
// histogram_quantile against values worked by hand from Prometheus's definition, and HttpGet
// against a one-shot HTTP server on a loopback socket.
#include "tools/bench/metrics_scrape.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

// Two label sets, as iquest-serve writes them, plus a series of another name that shares the
// prefix and must not be summed in.
constexpr char kText[] = R"(# HELP iquest_step_duration_seconds Engine step.
# TYPE iquest_step_duration_seconds histogram
iquest_step_duration_seconds_count{model="a"} 10
iquest_step_duration_seconds_sum{model="a"} 0.025
iquest_step_duration_seconds_bucket{model="a",le="0.001"} 2
iquest_step_duration_seconds_bucket{model="a",le="0.002"} 6
iquest_step_duration_seconds_bucket{model="a",le="0.004"} 10
iquest_step_duration_seconds_bucket{model="a",le="+Inf"} 10
iquest_step_duration_seconds_count{model="b"} 2
iquest_step_duration_seconds_sum{model="b"} 0.010
iquest_step_duration_seconds_bucket{model="b",le="0.001"} 0
iquest_step_duration_seconds_bucket{model="b",le="0.002"} 0
iquest_step_duration_seconds_bucket{model="b",le="0.004"} 0
iquest_step_duration_seconds_bucket{model="b",le="+Inf"} 2
iquest_step_duration_seconds_total_bucket{le="+Inf"} 99
)";

TEST(MetricsScrapeTest, ParsesAndSumsOverLabelSets) {
  ASSERT_OK_AND_ASSIGN(HistogramSnapshot h, ParseHistogram(kText, "iquest_step_duration_seconds"));
  EXPECT_DOUBLE_EQ(h.count, 12);
  EXPECT_DOUBLE_EQ(h.sum, 0.035);
  ASSERT_EQ(h.buckets.size(), 4u);
  EXPECT_DOUBLE_EQ(h.buckets[0].first, 0.001);
  EXPECT_DOUBLE_EQ(h.buckets[0].second, 2);
  EXPECT_DOUBLE_EQ(h.buckets[2].second, 10);
  EXPECT_TRUE(std::isinf(h.buckets[3].first));
  EXPECT_DOUBLE_EQ(h.buckets[3].second, 12);
}

TEST(MetricsScrapeTest, AMissingHistogramIsNotFound) {
  EXPECT_EQ(ParseHistogram(kText, "iquest_batch_tokens").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseHistogram("x_bucket{le=\"1\"} nope\n", "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsScrapeTest, QuantilesInterpolateInsideTheBucket) {
  HistogramSnapshot h;
  h.buckets = {{0.001, 2}, {0.002, 6}, {0.004, 10}, {INFINITY, 10}};
  h.count = 10;
  h.sum = 0.025;
  // rank 5 of 10 falls in (0.001, 0.002] holding ranks 3..6: 0.001 + 0.001 * (5 - 2) / 4.
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.5), 0.00175);
  // rank 1 in the first bucket, which starts at 0.
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.1), 0.0005);
  // rank 9.9 in (0.002, 0.004] holding 7..10: 0.002 + 0.002 * 3.9 / 4.
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.99), 0.002 + 0.002 * 3.9 / 4);
  const LatencySummary ms = SummarizeHistogramMs(h);
  EXPECT_EQ(ms.count, 10);
  EXPECT_DOUBLE_EQ(ms.mean, 2.5);
  EXPECT_DOUBLE_EQ(ms.p50, 1.75);
}

TEST(MetricsScrapeTest, QuantileInTheInfBucketIsTheHighestFiniteBound) {
  HistogramSnapshot h;
  h.buckets = {{0.001, 1}, {INFINITY, 4}};
  EXPECT_DOUBLE_EQ(HistogramQuantile(h, 0.99), 0.001);
  EXPECT_DOUBLE_EQ(HistogramQuantile(HistogramSnapshot{}, 0.5), 0);
}

TEST(MetricsScrapeTest, SubtractLeavesWhatHappenedBetweenScrapes) {
  HistogramSnapshot before;
  before.buckets = {{0.001, 2}, {INFINITY, 3}};
  before.count = 3;
  before.sum = 0.01;
  HistogramSnapshot after;
  after.buckets = {{0.001, 2}, {INFINITY, 7}};
  after.count = 7;
  after.sum = 0.05;
  const HistogramSnapshot d = Subtract(after, before);
  EXPECT_DOUBLE_EQ(d.count, 4);
  EXPECT_DOUBLE_EQ(d.sum, 0.04);
  EXPECT_DOUBLE_EQ(d.buckets[0].second, 0);
  EXPECT_DOUBLE_EQ(d.buckets[1].second, 4);
}

// Accepts one connection on 127.0.0.1, reads the request, answers `response`, closes.
class OneShotServer {
 public:
  explicit OneShotServer(std::string response) : response_(std::move(response)) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listener_, 1), 0);
    socklen_t len = sizeof(addr);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      char buffer[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      request_ = request;
      send(fd, response_.data(), response_.size(), MSG_NOSIGNAL);
      close(fd);
    });
  }
  ~OneShotServer() {
    thread_.join();
    close(listener_);
  }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }
  // Valid once the answer was sent (after HttpGet returned).
  const std::string& request() const { return request_; }

 private:
  std::string response_;
  int listener_ = -1;
  int port_ = 0;
  std::string request_;
  std::thread thread_;
};

TEST(MetricsScrapeTest, HttpGetReturnsTheBodyOfA200) {
  OneShotServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody\nlines\n");
  ASSERT_OK_AND_ASSIGN(std::string body, HttpGet(server.target(), "/metrics", 5));
  EXPECT_EQ(body, "body\nlines\n");
  EXPECT_EQ(server.request().rfind("GET /metrics HTTP/1.0\r\n", 0), 0u) << server.request();
}

TEST(MetricsScrapeTest, HttpGetRefusesOtherStatusesAndBadTargets) {
  {
    OneShotServer server("HTTP/1.1 404 Not Found\r\n\r\n");
    const absl::StatusOr<std::string> body = HttpGet(server.target(), "/metrics", 5);
    EXPECT_EQ(body.status().code(), absl::StatusCode::kInternal);
    EXPECT_NE(body.status().message().find("404"), std::string::npos) << body.status();
  }
  EXPECT_EQ(HttpGet("no-port", "/metrics", 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
