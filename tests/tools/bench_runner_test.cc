// Short iquest-bench runs against the fake server: request counts, warmup, errors by code,
// cancellation, Poisson pacing and the run's time bound.
#include "tools/bench/bench_runner.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_generation_server.h"

namespace iquest {
namespace {

using testing::FakeGenerationServer;
using testing::FakeServerOptions;

Connection Connect(const FakeGenerationServer& server, int num_channels = 2) {
  ConnectionOptions options;
  options.target = server.target();
  auto connection = Connection::Open(options, num_channels);
  EXPECT_OK(connection);
  return *std::move(connection);
}

BenchConfig SmallConfig() {
  BenchConfig config;
  config.concurrency = 4;
  config.num_requests = 20;
  config.input_len = 5;
  config.output_len = 6;
  config.max_duration_s = 20;
  return config;
}

TEST(BenchRunnerTest, CountsTokensAndErrorsByCode) {
  FakeServerOptions fake;
  fake.reject_every = 4;  // Calls 4, 8, 12, 16 and 20 fail.
  FakeGenerationServer server(fake);
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(SmallConfig(), Connect(server)));
  EXPECT_EQ(server.num_generate_calls(), 20);
  ASSERT_EQ(result.records.size(), 20U);
  EXPECT_EQ(result.num_not_sent, 0);

  const BenchReport report = ComputeReport(result.records, result.duration_s);
  EXPECT_EQ(report.num_completed, 15);
  EXPECT_EQ(report.num_failed, 5);
  EXPECT_EQ(report.num_cancelled, 0);
  ASSERT_EQ(report.errors.size(), 1U);
  EXPECT_EQ(report.errors.at("RESOURCE_EXHAUSTED"), 5);
  EXPECT_EQ(report.total_output_tokens, 15 * 6);
  EXPECT_EQ(report.total_input_tokens, 15 * 5);
  EXPECT_EQ(report.ttft_ms.count, 15);
  EXPECT_EQ(report.tpot_ms.count, 15);
  EXPECT_EQ(report.itl_ms.count, 15 * 5);  // One token per response: five gaps each.
  EXPECT_GT(report.request_throughput, 0);
  EXPECT_LE(report.ttft_ms.p50, report.e2e_ms.p50);

  // The request the fake saw: random ids of input_len below GetModelInfo's vocabulary, exact
  // output length.
  const auto request = server.last_generate_request();
  ASSERT_EQ(request.token_ids().ids_size(), 5);
  for (int32_t id : request.token_ids().ids()) EXPECT_LT(id, 1000);
  EXPECT_EQ(request.sampling().max_tokens(), 6);
  EXPECT_TRUE(request.sampling().ignore_eos());

  const std::string json = ReportJsonText(report, nlohmann::json::object());
  const nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_EQ(parsed["errors"]["RESOURCE_EXHAUSTED"], 5);
  EXPECT_EQ(parsed["num_completed"], 15);
}

TEST(BenchRunnerTest, WarmupRequestsAreSentButNotMeasured) {
  FakeGenerationServer server;
  BenchConfig config = SmallConfig();
  config.warmup = 3;
  config.num_requests = 6;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(config, Connect(server)));
  EXPECT_EQ(server.num_generate_calls(), 9);
  EXPECT_EQ(result.records.size(), 6U);
  EXPECT_EQ(ComputeReport(result.records, result.duration_s).num_completed, 6);
}

TEST(BenchRunnerTest, CancelFractionCancelsAfterTheFirstToken) {
  FakeServerOptions fake;
  fake.token_delay = std::chrono::milliseconds(5);
  FakeGenerationServer server(fake);
  BenchConfig config = SmallConfig();
  config.num_requests = 8;
  config.output_len = 200;  // A second of tokens each, unless cancelled.
  config.cancel_fraction = 1.0;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(config, Connect(server)));
  const BenchReport report = ComputeReport(result.records, result.duration_s);
  EXPECT_EQ(report.num_cancelled, 8);
  EXPECT_EQ(report.num_failed, 0);
  EXPECT_EQ(report.num_completed, 0);
  EXPECT_LT(result.duration_s, 1.0);
  for (const RequestRecord& record : result.records) EXPECT_GE(record.ttft_s, 0);
}

TEST(BenchRunnerTest, PoissonArrivalsWithoutAConcurrencyBound) {
  FakeGenerationServer server;
  BenchConfig config = SmallConfig();
  config.concurrency = 0;
  config.request_rate = 200;
  config.num_requests = 10;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(config, Connect(server, 1)));
  EXPECT_EQ(ComputeReport(result.records, result.duration_s).num_completed, 10);
}

TEST(BenchRunnerTest, PromptFileLinesAreSentAsTextInTurn) {
  testing::TempDir dir;
  const std::string path = dir.Join("prompts.txt");
  std::ofstream(path) << "first prompt\n\nsecond\n";
  FakeGenerationServer server;
  BenchConfig config = SmallConfig();
  config.concurrency = 1;
  config.num_requests = 3;
  config.prompt_file = path;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(config, Connect(server)));
  EXPECT_EQ(server.last_generate_request().text(), "first prompt");  // Lines 1, 2, 1.
  EXPECT_EQ(ComputeReport(result.records, result.duration_s).total_input_tokens,
            12 + 6 + 12);  // The fake counts a text prompt's bytes.
}

TEST(BenchRunnerTest, MaxDurationBoundsTheRun) {
  FakeServerOptions fake;
  fake.token_delay = std::chrono::milliseconds(20);
  FakeGenerationServer server(fake);
  BenchConfig config = SmallConfig();
  config.concurrency = 2;
  config.num_requests = 10;
  config.output_len = 1000;  // 20 s per request without the bound.
  config.max_duration_s = 0.3;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(config, Connect(server)));
  EXPECT_LT(result.duration_s, 3.0);
  // Both slots stay busy until the bound; a stream that expires a hair before the sender's own
  // clock says so may let one more request out, which then expires at once.
  const int64_t num_sent = static_cast<int64_t>(result.records.size());
  EXPECT_GE(num_sent, 2);
  EXPECT_LE(num_sent, 3);
  EXPECT_EQ(result.num_not_sent, 10 - num_sent);
  const BenchReport report = ComputeReport(result.records, result.duration_s);
  EXPECT_EQ(report.num_failed, num_sent);
  EXPECT_EQ(report.errors.at("DEADLINE_EXCEEDED"), num_sent);
}

TEST(BenchRunnerTest, TheSeedFixesThePrompts) {
  FakeGenerationServer server;
  auto last_prompt = [&](uint64_t seed) {
    BenchConfig config = SmallConfig();
    config.concurrency = 1;  // The last request the fake sees is the last one sent.
    config.num_requests = 3;
    config.seed = seed;
    EXPECT_OK(RunBench(config, Connect(server)));
    return server.last_generate_request().token_ids().SerializeAsString();
  };
  EXPECT_EQ(last_prompt(5), last_prompt(5));
  EXPECT_NE(last_prompt(5), last_prompt(6));
}

TEST(BenchRunnerTest, RejectsAConfigWithoutPacing) {
  FakeGenerationServer server;
  BenchConfig config = SmallConfig();
  config.concurrency = 0;
  EXPECT_STATUS_CODE(RunBench(config, Connect(server)), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
