// CheckFits, the one owner of "can this request ever run": each failure names what is wrong and
// the limit, and the boundaries are exact.
#include "scheduler/check_fits.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

// vocab 100, context 64, 8 blocks of 4 tokens (32 tokens of KV).
constexpr FitLimits kLimits{100, 64, 8, 4};

std::vector<int32_t> Prompt(int length) { return std::vector<int32_t>(length, 7); }

TEST(CheckFitsTest, AcceptsWhatFitsExactly) {
  EXPECT_OK(CheckFits(Prompt(1), 1, kLimits));
  EXPECT_OK(CheckFits(Prompt(16), 16, kLimits));  // 32 tokens: the whole pool.
  EXPECT_OK(CheckFits(std::vector<int32_t>{0, 99}, 1, kLimits));
}

TEST(CheckFitsTest, EmptyPromptIsInvalid) {
  const absl::Status status = CheckFits({}, 4, kLimits);
  EXPECT_STATUS_CODE(status, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("prompt: must be non-empty"), std::string::npos) << status;
}

TEST(CheckFitsTest, TokenIdsOutsideTheVocabularyNameTheIdAndTheRange) {
  for (int32_t bad : {-1, 100, 1 << 30}) {
    const absl::Status status = CheckFits(std::vector<int32_t>{5, bad, 6}, 1, kLimits);
    EXPECT_STATUS_CODE(status, absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find(absl::StrCat("token id ", bad, " at position 1")),
              std::string::npos)
        << status;
    EXPECT_NE(status.message().find("[0, 100)"), std::string::npos) << status;
  }
}

TEST(CheckFitsTest, ContextOverflowNamesBothLengthsAndTheLimit) {
  FitLimits roomy = kLimits;
  roomy.num_blocks = 1000;
  EXPECT_OK(CheckFits(Prompt(60), 4, roomy));
  const absl::Status status = CheckFits(Prompt(60), 5, roomy);
  EXPECT_STATUS_CODE(status, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("prompt (60 tokens) + max_tokens (5)"), std::string::npos)
      << status;
  EXPECT_NE(status.message().find("maximum context length of 64"), std::string::npos) << status;
}

TEST(CheckFitsTest, MoreThanTheWholeKvPoolIsOutOfRangeWithTheBlockCounts) {
  const absl::Status status = CheckFits(Prompt(16), 17, kLimits);  // 33 tokens: 9 blocks.
  EXPECT_STATUS_CODE(status, absl::StatusCode::kOutOfRange);
  EXPECT_NE(status.message().find("needs 9 KV blocks of 4 tokens"), std::string::npos) << status;
  EXPECT_NE(status.message().find("has 8"), std::string::npos) << status;
}

}  // namespace
}  // namespace iquest
