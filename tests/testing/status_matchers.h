// Status assertions for GoogleTest; absl's own matchers are newer than Debian 12's abseil.
#pragma once

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iquest::testing_internal {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace iquest::testing_internal

#define EXPECT_OK(expr)                                         \
  EXPECT_TRUE(::iquest::testing_internal::GetStatus(expr).ok()) \
      << ::iquest::testing_internal::GetStatus(expr)
#define ASSERT_OK(expr)                                         \
  ASSERT_TRUE(::iquest::testing_internal::GetStatus(expr).ok()) \
      << ::iquest::testing_internal::GetStatus(expr)

#define IQ_TEST_CONCAT_INNER(a, b) a##b
#define IQ_TEST_CONCAT(a, b) IQ_TEST_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(IQ_TEST_CONCAT(iq_status_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(status_or, lhs, expr) \
  auto status_or = (expr);                              \
  ASSERT_TRUE(status_or.ok()) << status_or.status();    \
  lhs = std::move(status_or).value()

#define EXPECT_STATUS_CODE(expr, expected_code)                                  \
  EXPECT_EQ(::iquest::testing_internal::GetStatus(expr).code(), (expected_code)) \
      << ::iquest::testing_internal::GetStatus(expr)
