#include "scheduler/fair_share.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/check.h"

namespace iquest {

void SplitTokens(int64_t budget, std::vector<TenantDemand>& tenants) {
  CHECK_GE(budget, 0);
  std::vector<size_t> backlogged;
  for (size_t i = 0; i < tenants.size(); ++i) {
    CHECK_GT(tenants[i].weight, 0.0);
    CHECK_GE(tenants[i].demand, 0);
    tenants[i].granted = 0;
    if (tenants[i].demand > 0) backlogged.push_back(i);
  }
  // Water-filling: a tenant that asks for no more than its share of what is left gets all it asks
  // and leaves the group; repeat until everyone left wants more than its share.
  int64_t remaining = budget;
  while (!backlogged.empty()) {
    double weight_sum = 0.0;
    for (size_t i : backlogged) weight_sum += tenants[i].weight;
    std::vector<size_t> still;
    int64_t taken = 0;
    for (size_t i : backlogged) {
      TenantDemand& t = tenants[i];
      if (static_cast<double>(t.demand) <= static_cast<double>(remaining) * t.weight / weight_sum) {
        t.granted = t.demand;
        t.carry = 0.0;
        taken += t.demand;
      } else {
        still.push_back(i);
      }
    }
    remaining -= taken;
    if (still.size() == backlogged.size()) break;
    backlogged = std::move(still);
  }
  if (backlogged.empty()) return;
  CHECK_GE(remaining, 0);
  // Everyone left wants more than its share, so together they take all of `remaining`. Shares
  // plus carries, rounded by largest remainder so that the grants sum to `remaining` exactly.
  double weight_sum = 0.0;
  for (size_t i : backlogged) weight_sum += tenants[i].weight;
  std::vector<double> target(tenants.size(), 0.0);
  int64_t granted_sum = 0;
  for (size_t i : backlogged) {
    TenantDemand& t = tenants[i];
    const double share = static_cast<double>(remaining) * t.weight / weight_sum;
    target[i] = std::clamp(share + t.carry, 0.0, static_cast<double>(t.demand));
    t.granted = static_cast<int64_t>(std::floor(target[i]));
    t.carry += share;  // Minus the grant, below.
    granted_sum += t.granted;
  }
  const auto remainder = [&](size_t i) {
    return target[i] - static_cast<double>(tenants[i].granted);
  };
  while (granted_sum != remaining) {
    // Under: one more token to the largest remainder that can take one; over: one fewer to the
    // smallest. Both exist: demands sum above `remaining`, and an over-grant has a positive grant.
    size_t pick = tenants.size();
    for (size_t i : backlogged) {
      const TenantDemand& t = tenants[i];
      if (granted_sum < remaining ? t.granted >= t.demand : t.granted <= 0) continue;
      if (pick == tenants.size() || (granted_sum < remaining ? remainder(i) > remainder(pick)
                                                             : remainder(i) < remainder(pick)))
        pick = i;
    }
    CHECK_LT(pick, tenants.size());
    const int64_t step = granted_sum < remaining ? 1 : -1;
    tenants[pick].granted += step;
    granted_sum += step;
  }
  for (size_t i : backlogged) {
    TenantDemand& t = tenants[i];
    t.carry = std::clamp(t.carry - static_cast<double>(t.granted), -1.0, 1.0);
  }
}

absl::StatusOr<TenantWeights> ParseTenantWeights(absl::string_view text) {
  TenantWeights weights;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("tenant weights line ", line_number,
                                                     ": expected `TENANT WEIGHT`, got ",
                                                     fields.size(), " fields"));
    }
    double weight = 0.0;
    if (!absl::SimpleAtod(fields[1], &weight) || !(weight > 0.0 && weight <= kMaxTenantWeight)) {
      return absl::InvalidArgumentError(absl::StrCat("tenant weights line ", line_number,
                                                     ": weight must be a number in (0, ",
                                                     kMaxTenantWeight, "]"));
    }
    if (!weights.emplace(std::string(fields[0]), weight).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tenant weights line ", line_number, ": tenant named twice"));
    }
  }
  return weights;
}

}  // namespace iquest
