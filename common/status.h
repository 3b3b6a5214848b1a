// Status helpers that Debian 12's abseil (20220623) lacks: RETURN_IF_ERROR and ASSIGN_OR_RETURN.
// Rename to ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN once abseil is upgraded.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IQ_STATUS_CONCAT_INNER(a, b) a##b
#define IQ_STATUS_CONCAT(a, b) IQ_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    const ::absl::Status iq_status_ = (expr); \
    if (!iq_status_.ok()) return iq_status_;  \
  } while (false)

// `ASSIGN_OR_RETURN(T x, F())` or `ASSIGN_OR_RETURN(x, F())`: unwraps a StatusOr or returns its
// error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  IQ_ASSIGN_OR_RETURN_IMPL(IQ_STATUS_CONCAT(iq_statusor_, __LINE__), lhs, expr)

#define IQ_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr)      \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
