// iquest-bench's statistics on data whose answers are known (NumPy's percentiles of 1..100).
#include "tools/bench/bench_stats.h"

#include <gtest/gtest.h>

#include <numeric>

namespace iquest {
namespace {

TEST(PercentileTest, InterpolatesLikeNumPy) {
  std::vector<double> values(100);
  std::iota(values.begin(), values.end(), 1.0);  // 1..100
  // numpy.percentile(range(1, 101), [0, 50, 90, 99, 100]).
  EXPECT_DOUBLE_EQ(Percentile(values, 0), 1.0);
  EXPECT_DOUBLE_EQ(Percentile(values, 50), 50.5);
  EXPECT_DOUBLE_EQ(Percentile(values, 90), 90.1);
  EXPECT_DOUBLE_EQ(Percentile(values, 99), 99.01);
  EXPECT_DOUBLE_EQ(Percentile(values, 100), 100.0);
  EXPECT_DOUBLE_EQ(Percentile({0.0, 10.0}, 90), 9.0);
  EXPECT_DOUBLE_EQ(Percentile({7.0}, 99), 7.0);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0.0);
}

TEST(SummarizeTest, SortsAndAverages) {
  const LatencySummary summary = Summarize({4.0, 1.0, 3.0, 2.0});
  EXPECT_EQ(summary.count, 4);
  EXPECT_DOUBLE_EQ(summary.mean, 2.5);
  EXPECT_DOUBLE_EQ(summary.p50, 2.5);
  EXPECT_DOUBLE_EQ(summary.p90, 3.7);
  EXPECT_DOUBLE_EQ(Summarize({}).mean, 0.0);
  EXPECT_EQ(Summarize({}).count, 0);
}

RequestRecord Completed(double ttft_s, double e2e_s, int64_t output_tokens,
                        std::vector<double> itl_s) {
  RequestRecord record;
  record.ttft_s = ttft_s;
  record.e2e_s = e2e_s;
  record.output_tokens = output_tokens;
  record.prompt_tokens = 10;
  record.itl_s = std::move(itl_s);
  return record;
}

TEST(ComputeReportTest, SeparatesSuccessesErrorsAndCancellations) {
  std::vector<RequestRecord> records = {
      Completed(0.1, 0.5, 5, {0.1, 0.1, 0.1, 0.1}),  // TPOT (0.5 - 0.1) / 4 = 100 ms.
      Completed(0.3, 0.3, 1, {}),                    // One token: no TPOT.
  };
  RequestRecord failed;
  failed.error_code = "RESOURCE_EXHAUSTED";
  records.push_back(failed);
  records.push_back(failed);
  RequestRecord cancelled = Completed(0.2, 0.2, 1, {});
  cancelled.cancelled = true;
  records.push_back(cancelled);

  const BenchReport report = ComputeReport(records, 2.0);
  EXPECT_EQ(report.num_completed, 2);
  EXPECT_EQ(report.num_failed, 2);
  EXPECT_EQ(report.num_cancelled, 1);
  ASSERT_EQ(report.errors.size(), 1U);
  EXPECT_EQ(report.errors.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(report.total_input_tokens, 20);
  EXPECT_EQ(report.total_output_tokens, 6);
  EXPECT_DOUBLE_EQ(report.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(report.output_throughput, 3.0);
  EXPECT_DOUBLE_EQ(report.total_token_throughput, 13.0);
  EXPECT_EQ(report.ttft_ms.count, 2);
  EXPECT_DOUBLE_EQ(report.ttft_ms.mean, 200.0);
  EXPECT_EQ(report.tpot_ms.count, 1);
  EXPECT_DOUBLE_EQ(report.tpot_ms.mean, 100.0);
  EXPECT_EQ(report.itl_ms.count, 4);
  EXPECT_DOUBLE_EQ(report.itl_ms.p99, 100.0);
  EXPECT_DOUBLE_EQ(report.e2e_ms.p50, 400.0);
}

TEST(ReportJsonTest, ParsesBackWithEveryField) {
  std::vector<RequestRecord> records = {Completed(0.1, 0.5, 5, {0.1, 0.1, 0.1, 0.1})};
  RequestRecord failed;
  failed.error_code = "UNAVAILABLE";
  records.push_back(failed);
  const std::string text =
      ReportJsonText(ComputeReport(records, 1.0), nlohmann::json{{"concurrency", 4}});
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(json.is_discarded()) << text;
  EXPECT_EQ(json["config"]["concurrency"], 4);
  EXPECT_EQ(json["num_completed"], 1);
  EXPECT_EQ(json["num_failed"], 1);
  EXPECT_EQ(json["errors"]["UNAVAILABLE"], 1);
  EXPECT_DOUBLE_EQ(json["tpot_ms"]["mean"].get<double>(), 100.0);
  for (const char* metric : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    for (const char* stat : {"mean", "p50", "p90", "p99"}) {
      EXPECT_TRUE(json[metric].contains(stat)) << metric << "." << stat;
    }
  }
}

TEST(FormatTableTest, ListsErrorsByCode) {
  RequestRecord failed;
  failed.error_code = "RESOURCE_EXHAUSTED";
  const std::string table = FormatTable(ComputeReport({failed}, 1.0));
  EXPECT_NE(table.find("RESOURCE_EXHAUSTED"), std::string::npos) << table;
  EXPECT_NE(table.find("Time to First Token"), std::string::npos) << table;
}

}  // namespace
}  // namespace iquest
