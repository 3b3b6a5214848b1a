#include "common/flags.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

absl::Status ParseArgs(FlagParser& parser, std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("prog")};
  for (std::string& arg : args) argv.push_back(arg.data());
  return parser.Parse(static_cast<int>(argv.size()), argv.data());
}

TEST(FlagParserTest, ParsesBothSpellingsAndBareBooleans) {
  std::string model;
  int64_t tokens = 1;
  double temperature = 0;
  bool stop = false;
  FlagParser parser("prog", "test");
  parser.AddString("model", &model, "m");
  parser.AddInt("max-tokens", &tokens, "n", 1, 100);
  parser.AddDouble("temperature", &temperature, "t", 0.0, 2.0);
  parser.AddBool("stop-at-eos", &stop, "s");
  EXPECT_OK(ParseArgs(
      parser, {"--model", "/m", "--max-tokens=7", "--temperature", "0.5", "--stop-at-eos"}));
  EXPECT_EQ(model, "/m");
  EXPECT_EQ(tokens, 7);
  EXPECT_EQ(temperature, 0.5);
  EXPECT_TRUE(stop);
}

TEST(FlagParserTest, RejectsBadValuesNamingTheFlagAndRange) {
  int64_t tokens = 1;
  double temperature = 0;
  FlagParser parser("prog", "test");
  parser.AddInt("max-tokens", &tokens, "n", 1, 100);
  parser.AddDouble("temperature", &temperature, "t", 0.0, 2.0);
  for (const auto& args : std::vector<std::vector<std::string>>{{"--max-tokens", "0"},
                                                                {"--max-tokens", "abc"},
                                                                {"--max-tokens"},
                                                                {"--temperature", "nan"},
                                                                {"--temperature", "inf"},
                                                                {"--nope", "1"},
                                                                {"stray"}}) {
    const absl::Status status = ParseArgs(parser, args);
    EXPECT_STATUS_CODE(status, absl::StatusCode::kInvalidArgument);
  }
  const absl::Status status = ParseArgs(parser, {"--max-tokens", "101"});
  EXPECT_NE(status.message().find("--max-tokens"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("[1, 100]"), absl::string_view::npos) << status;
}

TEST(ParseIntListTest, ChecksEveryValue) {
  std::vector<int32_t> ids;
  EXPECT_OK(ParseIntList("1,2,3", 0, 10, &ids));
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_STATUS_CODE(ParseIntList("1,,3", 0, 10, &ids), absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(ParseIntList("1,11", 0, 10, &ids), absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(ParseIntList("-1", 0, 10, &ids), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
