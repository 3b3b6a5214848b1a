#include "engine/stop_strings.h"

#include <gtest/gtest.h>

namespace iquest {
namespace {

// Feeds pieces one at a time and returns everything emitted plus whether a stop matched.
std::pair<std::string, bool> Feed(std::vector<std::string> stops, std::vector<std::string> pieces) {
  StopStringMatcher matcher(std::move(stops));
  std::string out;
  bool matched = false;
  for (const std::string& piece : pieces) {
    out += matcher.Append(piece, matched);
    if (matched) return {out, true};
  }
  return {out + matcher.Flush(), false};
}

TEST(StopStringMatcherTest, StopsBeforeAStopStringSplitAcrossPieces) {
  EXPECT_EQ(Feed({"###"}, {"def f", "():#", "#", "# tail"}),
            std::make_pair(std::string("def f():"), true));
}

TEST(StopStringMatcherTest, EarliestOfSeveralStopsWins) {
  EXPECT_EQ(Feed({"world", "lo w"}, {"hello world"}), std::make_pair(std::string("hel"), true));
}

TEST(StopStringMatcherTest, HeldBackTextIsReleasedWhenNoMatch) {
  StopStringMatcher matcher({"STOP"});
  bool matched = false;
  EXPECT_EQ(matcher.Append("abcST", matched), "abc");  // "ST" might begin "STOP".
  EXPECT_EQ(matcher.Append("x", matched), "STx");
  EXPECT_EQ(matcher.Append("ST", matched), "");
  EXPECT_EQ(matcher.Flush(), "ST");
  EXPECT_FALSE(matched);
}

TEST(StopStringMatcherTest, HoldsWholeCharacters) {
  StopStringMatcher matcher({"\xc3\xa9!"});  // "é!"
  bool matched = false;
  EXPECT_EQ(matcher.Append("a\xc3\xa9", matched), "a");  // "é" may start the stop string.
  EXPECT_EQ(matcher.Append("x", matched), "\xc3\xa9x");
  EXPECT_EQ(matcher.Append("\xc3\xa9!", matched), "");
  EXPECT_TRUE(matched);
}

}  // namespace
}  // namespace iquest
