// CHECK macros for invariants (never for user input): on failure they log file:line and the
// streamed context, then abort. They stay on in release builds.
#pragma once

#include <sstream>

namespace iquest::internal {

// Collects the streamed message and aborts in its destructor.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

// Lets `CHECK(c) << ...` be a single expression whose stream part runs only on failure.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace iquest::internal

#define CHECK(condition)                        \
  (condition) ? (void)0                         \
              : ::iquest::internal::Voidify() & \
                    ::iquest::internal::CheckFailure(__FILE__, __LINE__, #condition)

#define IQ_CHECK_OP(a, op, b) CHECK((a)op(b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
#define CHECK_EQ(a, b) IQ_CHECK_OP(a, ==, b)
#define CHECK_NE(a, b) IQ_CHECK_OP(a, !=, b)
#define CHECK_LT(a, b) IQ_CHECK_OP(a, <, b)
#define CHECK_LE(a, b) IQ_CHECK_OP(a, <=, b)
#define CHECK_GT(a, b) IQ_CHECK_OP(a, >, b)
#define CHECK_GE(a, b) IQ_CHECK_OP(a, >=, b)
// For StatusOr/Status values that must be OK by construction (e.g. in tools after validation).
#define CHECK_OK(expr)                                \
  do {                                                \
    const auto& iq_check_status_ = (expr);            \
    CHECK(iq_check_status_.ok()) << iq_check_status_; \
  } while (false)
