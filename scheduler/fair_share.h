// Weighted fair share of one step's token budget among tenants.
//
// SplitTokens is weighted max-min fairness (water-filling): each tenant gets min(demand, share),
// shares are in proportion to the weights, and what a tenant cannot use goes to the others, so the
// split is work-conserving. Shares are fractional and tokens are not: the fraction a tenant was
// owed (or over-served) is carried to its next step, as the deficit counter of deficit round robin
// is, so over many steps backlogged tenants of weight 3 and 1 get tokens in exactly a 3:1 ratio.
// A tenant whose whole demand was met is not backlogged and carries nothing (no banked credit).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iquest {

struct TenantDemand {
  double weight = 1.0;  // > 0.
  int64_t demand = 0;   // Tokens it could use this step, >= 0.
  double carry = 0.0;   // In and out: owed (+) or over-served (-) so far, within [-1, 1].
  int64_t granted = 0;  // Out: tokens granted, <= demand.
};

// Splits `budget` tokens: sum(granted) == min(budget, sum(demand)).
void SplitTokens(int64_t budget, std::vector<TenantDemand>& tenants);

// Tenant weights as --tenant-weights reads them: one `TENANT WEIGHT` pair per line, separated by
// white space; `#` starts a comment; blank lines are skipped. Weights are in (0, 1000]; a tenant
// named twice is an error. Errors name the line.
using TenantWeights = std::map<std::string, double>;
absl::StatusOr<TenantWeights> ParseTenantWeights(absl::string_view text);

inline constexpr double kMaxTenantWeight = 1000.0;

}  // namespace iquest
