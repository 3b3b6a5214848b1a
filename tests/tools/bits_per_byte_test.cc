// The held-out protocol's windows: every token after the first is scored exactly once, windows
// never exceed the context, and consecutive windows share one (given) token.
#include "tools/eval/bits_per_byte.h"

#include <gtest/gtest.h>

#include <vector>

namespace iquest {
namespace {

TEST(ScoringWindowsTest, EveryTokenAfterTheFirstIsScoredOnce) {
  for (int64_t context : {2, 3, 16, 256}) {
    for (int64_t num_tokens : {1, 2, 3, 15, 16, 17, 255, 256, 257, 511, 512, 1000}) {
      std::vector<int> scored(static_cast<size_t>(num_tokens), 0);
      int64_t previous_end = -1;
      for (const TokenWindow& w : ScoringWindows(num_tokens, context)) {
        EXPECT_GE(w.size, 2);
        EXPECT_LE(w.size, context);
        EXPECT_LE(w.begin + w.size, num_tokens);
        if (previous_end >= 0) {
          EXPECT_EQ(w.begin, previous_end - 1);  // One token shared.
        }
        previous_end = w.begin + w.size;
        for (int64_t i = w.begin + 1; i < w.begin + w.size; ++i) ++scored[i];
      }
      for (int64_t i = 0; i < num_tokens; ++i) {
        EXPECT_EQ(scored[i], i == 0 ? 0 : 1)
            << "token " << i << " of " << num_tokens << ", context " << context;
      }
    }
  }
}

TEST(ScoringWindowsTest, MatchesTheTrainingScriptsLayout) {
  // tools/train_demo_model/bpb.py: windows start at 0, 255, 510, ... for a context of 256.
  const std::vector<TokenWindow> windows = ScoringWindows(600, 256);
  ASSERT_EQ(windows.size(), 3u);
  EXPECT_EQ(windows[0].begin, 0);
  EXPECT_EQ(windows[0].size, 256);
  EXPECT_EQ(windows[1].begin, 255);
  EXPECT_EQ(windows[1].size, 256);
  EXPECT_EQ(windows[2].begin, 510);
  EXPECT_EQ(windows[2].size, 90);
}

}  // namespace
}  // namespace iquest
