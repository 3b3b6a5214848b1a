// SplitTokens (weighted water-filling with carried fractions), the --tenant-weights format, and
// the shares the Scheduler gives backlogged tenants of weights 3 and 1 over 1,000 steps: in the
// prefill-bound regime (the token budget is the bottleneck) and the decode-bound one (seats are).
#include "scheduler/fair_share.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>

#include "scheduler/scheduler.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

std::vector<int64_t> Split(int64_t budget, std::vector<TenantDemand>& tenants) {
  SplitTokens(budget, tenants);
  std::vector<int64_t> out;
  for (const TenantDemand& t : tenants) out.push_back(t.granted);
  return out;
}

TEST(SplitTokensTest, WaterFillsByWeight) {
  std::vector<TenantDemand> t = {{3.0, 100}, {1.0, 100}};
  EXPECT_EQ(Split(8, t), (std::vector<int64_t>{6, 2}));
  // A small demand is met in full and its unused share goes to the others by their weights.
  t = {{1.0, 2}, {2.0, 100}, {1.0, 100}};
  EXPECT_EQ(Split(14, t), (std::vector<int64_t>{2, 8, 4}));
  // Demands below the budget: everyone gets all of theirs.
  t = {{1.0, 3}, {5.0, 4}};
  EXPECT_EQ(Split(100, t), (std::vector<int64_t>{3, 4}));
  t = {{1.0, 0}, {1.0, 5}};
  EXPECT_EQ(Split(4, t), (std::vector<int64_t>{0, 4}));
  t = {};
  EXPECT_EQ(Split(4, t), (std::vector<int64_t>{}));
}

TEST(SplitTokensTest, CarriesMakeLongRunSharesExactAndStayBounded) {
  std::mt19937 random(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int num_tenants = std::uniform_int_distribution<int>(1, 6)(random);
    std::vector<TenantDemand> tenants(num_tenants);
    double weight_sum = 0.0;
    for (TenantDemand& t : tenants) {
      t.weight = std::uniform_real_distribution<double>(0.1, 10.0)(random);
      weight_sum += t.weight;
    }
    const int64_t budget = std::uniform_int_distribution<int64_t>(1, 37)(random);
    std::vector<int64_t> total(num_tenants, 0);
    const int kSteps = 500;
    for (int step = 0; step < kSteps; ++step) {
      for (TenantDemand& t : tenants) t.demand = 1000;  // Always backlogged.
      SplitTokens(budget, tenants);
      int64_t sum = 0;
      for (int i = 0; i < num_tenants; ++i) {
        sum += tenants[i].granted;
        total[i] += tenants[i].granted;
        ASSERT_LE(std::abs(tenants[i].carry), 1.0);
      }
      ASSERT_EQ(sum, budget);
    }
    for (int i = 0; i < num_tenants; ++i) {
      const double exact = static_cast<double>(budget) * kSteps * tenants[i].weight / weight_sum;
      EXPECT_NEAR(static_cast<double>(total[i]), exact, 2.0) << "trial " << trial;
    }
  }
}

TEST(SplitTokensTest, GrantsSumToWhatCanBeUsed) {
  std::mt19937 random(11);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<TenantDemand> tenants(std::uniform_int_distribution<int>(0, 5)(random));
    int64_t demand_sum = 0;
    for (TenantDemand& t : tenants) {
      t.weight = std::uniform_real_distribution<double>(0.001, 1000.0)(random);
      t.demand = std::uniform_int_distribution<int64_t>(0, 20)(random);
      t.carry = std::uniform_real_distribution<double>(-1.0, 1.0)(random);
      demand_sum += t.demand;
    }
    const int64_t budget = std::uniform_int_distribution<int64_t>(0, 60)(random);
    SplitTokens(budget, tenants);
    int64_t sum = 0;
    for (const TenantDemand& t : tenants) {
      ASSERT_GE(t.granted, 0);
      ASSERT_LE(t.granted, t.demand);
      sum += t.granted;
    }
    ASSERT_EQ(sum, std::min(budget, demand_sum)) << "trial " << trial;
  }
}

TEST(ParseTenantWeightsTest, ReadsPairsAndNamesTheBadLine) {
  ASSERT_OK_AND_ASSIGN(const TenantWeights w,
                       ParseTenantWeights("# tenant weight\nteam-a 3\n\n  team-b\t0.5  # half\n"));
  EXPECT_EQ(w, (TenantWeights{{"team-a", 3.0}, {"team-b", 0.5}}));
  for (const char* bad : {"a 3\nb\n", "a 3\nb 0\n", "a 3\nb -1\n", "a 3\nb x\n", "a 3\nb 1001\n",
                          "a 3\na 2\n", "a 3\nb 1 2\n", "a 3\nb nan\n"}) {
    const absl::StatusOr<TenantWeights> parsed = ParseTenantWeights(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("line 2"), std::string::npos) << parsed.status();
  }
  EXPECT_OK(ParseTenantWeights(""));
}

// Two tenants keep `depth` requests waiting each; returns the tokens each got over 1,000 steps.
std::map<std::string, int64_t> MeasureShares(const SchedulerConfig& config, int prompt_len,
                                             int max_tokens, int depth) {
  Scheduler scheduler(config, /*num_blocks=*/256, /*block_size=*/4);
  std::map<std::string, int64_t> tokens;
  std::map<std::string, int> live;
  int arrival = 0;
  const auto refill = [&] {
    for (const std::string tenant : {"heavy", "light"}) {
      while (live[tenant] < depth) {
        auto r = std::make_unique<Request>();
        std::vector<int32_t> prompt;
        for (int i = 0; i < prompt_len; ++i) prompt.push_back(1 + (arrival * 31 + i) % 97);
        r->SetPrompt(std::move(prompt));  // Distinct prompts: no prefix-cache hits.
        r->sampling.max_tokens = max_tokens;
        r->tenant = tenant;
        r->arrival_time = Clock::time_point(std::chrono::milliseconds(arrival++));
        ASSERT_OK(scheduler.AddRequest(std::move(r)));
        ++live[tenant];
      }
    }
  };
  for (int step = 0; step < 1000; ++step) {
    refill();
    const ScheduledBatch batch = scheduler.Schedule(Clock::time_point());
    std::vector<std::vector<int32_t>> sampled(batch.requests.size());
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      const Request& r = *batch.requests[i].request;
      tokens[r.tenant] += batch.requests[i].num_tokens;
      if (r.num_computed_tokens + batch.requests[i].num_tokens == r.num_tokens())
        sampled[i].push_back(5);
    }
    scheduler.Update(batch, sampled);
    for (const auto& done : scheduler.TakeFinished()) --live[done->tenant];
  }
  return tokens;
}

// Heavy's tokens over light's, printed with both counts.
double Ratio(const std::map<std::string, int64_t>& tokens, const char* regime) {
  const double ratio =
      static_cast<double>(tokens.at("heavy")) / static_cast<double>(tokens.at("light"));
  std::printf("%s: heavy %lld, light %lld tokens over 1,000 steps: %.3f\n", regime,
              static_cast<long long>(tokens.at("heavy")),
              static_cast<long long>(tokens.at("light")), ratio);
  return ratio;
}

SchedulerConfig ShareConfig(int64_t budget) {
  SchedulerConfig config;
  config.max_num_batched_tokens = budget;
  config.max_num_seqs = 8;
  config.max_model_len = 64;
  config.tenant_weights = {{"heavy", 3.0}};
  return config;
}

TEST(WeightedShareTest, ThreeToOneWhenTheTokenBudgetIsTheBottleneck) {
  SchedulerConfig config = ShareConfig(/*budget=*/16);
  const std::map<std::string, int64_t> tokens = MeasureShares(config, 30, 4, 4);
  EXPECT_NEAR(Ratio(tokens, "token-bound"), 3.0, 0.1);
  EXPECT_EQ(tokens.at("heavy") + tokens.at("light"), 16 * 1000);  // Work-conserving.
  // Unweighted, the same load splits evenly.
  config.tenant_weights.clear();
  EXPECT_NEAR(Ratio(MeasureShares(config, 30, 4, 4), "token-bound, unweighted"), 1.0, 0.05);
}

TEST(WeightedShareTest, ThreeToOneWhenSeatsAreTheBottleneck) {
  // A budget never binding: 8 seats of decodes are the bottleneck.
  EXPECT_NEAR(Ratio(MeasureShares(ShareConfig(/*budget=*/256), 2, 20, 8), "seat-bound"), 3.0, 0.15);
}

}  // namespace
}  // namespace iquest
