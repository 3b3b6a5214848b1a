// Chat templates: the three fallback renderings and their errors (the Jinja path is
// jinja_chat_test.cc's).
#include "model/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"user", "Hi"}, {"assistant", "Hello!"}, {"user", " Write code. "}};

TEST(ChatTemplateTest, ParsesFallbackNames) {
  EXPECT_EQ(*ParseChatTemplateKind("mistral"), ChatTemplateKind::kLlama2);
  EXPECT_EQ(*ParseChatTemplateKind("chatml"), ChatTemplateKind::kChatMl);
  auto unknown = ParseChatTemplateKind("vicuna");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("--chat-template chatml|llama3|llama2|FILE"),
            std::string::npos);
}

TEST(ChatTemplateTest, ChatMlWithDefaultSystemPrompt) {
  ChatTemplate t{ChatTemplateKind::kChatMl,
                 "You are LoopCoder, a helpful assistant developed by IQuest.",
                 "",
                 "",
                 {}};
  ASSERT_OK_AND_ASSIGN(const std::string prompt, ApplyChatTemplate(t, kConversation, true));
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are LoopCoder, a helpful assistant developed by "
            "IQuest.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
            "<|im_end|>\n<|im_start|>user\n Write code. <|im_end|>\n<|im_start|>assistant\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "Hi"}};
  ASSERT_OK_AND_ASSIGN(const std::string own, ApplyChatTemplate(t, with_system, false));
  EXPECT_EQ(own, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3) {
  ChatTemplate t{ChatTemplateKind::kLlama3, "", "<|begin_of_text|>", "<|end_of_text|>", {}};
  ASSERT_OK_AND_ASSIGN(const std::string prompt, ApplyChatTemplate(t, kConversation, true));
  EXPECT_EQ(prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWrite code.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama2FoldsTheSystemPrompt) {
  ChatTemplate t{ChatTemplateKind::kLlama2, "", "<s>", "</s>", {}};
  std::vector<ChatMessage> messages = {{"system", "Be brief."}};
  messages.insert(messages.end(), kConversation.begin(), kConversation.end());
  ASSERT_OK_AND_ASSIGN(const std::string prompt, ApplyChatTemplate(t, messages, true));
  EXPECT_EQ(prompt,
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Write "
            "code. [/INST]");
}

TEST(ChatTemplateTest, RejectsUnknownRolesAndLateSystemMessages) {
  ChatTemplate t;
  EXPECT_STATUS_CODE(ApplyChatTemplate(t, std::vector<ChatMessage>{{"tool", "x"}}, true),
                     absl::StatusCode::kInvalidArgument);
  EXPECT_STATUS_CODE(
      ApplyChatTemplate(t, std::vector<ChatMessage>{{"user", "x"}, {"system", "y"}}, true),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
