// iquest-cli's flag -> GenerateRequest mapping, without a server.
#include "tools/cli/request_builder.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

TEST(RequestBuilderTest, UnsetFlagsLeaveFieldsUnset) {
  GenerateOptions options;
  options.prompt = "p";
  ASSERT_OK_AND_ASSIGN(auto request, BuildGenerateRequest(options));
  EXPECT_EQ(request.text(), "p");
  const auto& sampling = request.sampling();
  EXPECT_FALSE(sampling.has_max_tokens());
  EXPECT_FALSE(sampling.has_temperature());
  EXPECT_FALSE(sampling.has_top_p());
  EXPECT_FALSE(sampling.has_top_k());
  EXPECT_FALSE(sampling.has_seed());
  EXPECT_FALSE(sampling.has_n());
  EXPECT_FALSE(sampling.ignore_eos());
  EXPECT_TRUE(request.request_id().empty());
}

TEST(RequestBuilderTest, SetFlagsReachTheProto) {
  GenerateOptions options;
  options.prompt_ids = "5,6";
  options.max_tokens = 9;
  options.temperature = 0.5;
  options.top_p = 0.9;
  options.top_k = -1;
  options.seed = 0;
  options.n = 3;
  options.stop = {"\n\n", "END"};
  options.ignore_eos = true;
  ASSERT_OK_AND_ASSIGN(auto request, BuildGenerateRequest(options));
  ASSERT_EQ(request.token_ids().ids_size(), 2);
  EXPECT_EQ(request.token_ids().ids(1), 6);
  const auto& sampling = request.sampling();
  EXPECT_EQ(sampling.max_tokens(), 9);
  EXPECT_FLOAT_EQ(sampling.temperature(), 0.5F);
  EXPECT_FLOAT_EQ(sampling.top_p(), 0.9F);
  EXPECT_EQ(sampling.top_k(), -1);
  EXPECT_TRUE(sampling.has_seed());
  EXPECT_EQ(sampling.n(), 3);
  ASSERT_EQ(sampling.stop_size(), 2);
  EXPECT_EQ(sampling.stop(0), "\n\n");
  EXPECT_TRUE(sampling.ignore_eos());
}

TEST(RequestBuilderTest, ChatMessagesNeedAKnownRole) {
  ASSERT_OK_AND_ASSIGN(auto message, ParseChatMessage("assistant:a:b"));
  EXPECT_EQ(message.role(), "assistant");
  EXPECT_EQ(message.content(), "a:b");
  EXPECT_STATUS_CODE(ParseChatMessage("no colon"), absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(ParseChatMessage("User:hi"), absl::StatusCode::kInvalidArgument);
}

TEST(RequestBuilderTest, TakeRepeatedFlagKeepsTheRestInOrder) {
  std::vector<std::string> args = {"--stop", "a", "--n", "2", "--stop=b", "--stop"};
  EXPECT_EQ(TakeRepeatedFlag("stop", args), (std::vector<std::string>{"a", "b"}));
  // A trailing flag without a value stays, so the parser reports it.
  EXPECT_EQ(args, (std::vector<std::string>{"--n", "2", "--stop"}));
}

}  // namespace
}  // namespace iquest
