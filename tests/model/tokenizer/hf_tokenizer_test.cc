// tokenizer.json loading and encoding on small built-in tokenizers: merges in both forms,
// ignore_merges, byte fallback, added-token flags, BOS/EOS rules, and malformed files.
#include "model/tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/model/tokenizer/mini_tokenizers.h"
#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

using testing::ByteLevelTokenizerJson;
using testing::SpmStyleTokenizerJson;

std::unique_ptr<HfTokenizer> Make(const nlohmann::json& doc, TokenizerConfig config = {}) {
  auto tokenizer = HfTokenizer::Create(doc.dump(), std::move(config));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& tokenizer, const std::string& text,
                         bool special = false) {
  auto ids = tokenizer.Encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(HfTokenizerTest, ByteLevelMergesAndRoundTrip) {
  auto tokenizer = Make(ByteLevelTokenizerJson());
  ASSERT_NE(tokenizer, nullptr);
  const int32_t hello = tokenizer->TokenToId("hello");
  const int32_t world = tokenizer->TokenToId(" world");
  ASSERT_GE(hello, 256);
  ASSERT_GE(world, 256);  // " wor" + "ld" is ranked before "ld" exists: an unordered list.
  EXPECT_EQ(Ids(*tokenizer, "hello world"), (std::vector<int32_t>{hello, world}));
  for (const std::string text : {"hello world", "héllo  wörld\n\n", "", "\t \x01\x7f", "日本"}) {
    EXPECT_EQ(tokenizer->Decode(Ids(*tokenizer, text), false), text);
  }
}

TEST(HfTokenizerTest, PairMergesEqualStringMerges) {
  auto strings = Make(ByteLevelTokenizerJson(/*pair_merges=*/false));
  auto pairs = Make(ByteLevelTokenizerJson(/*pair_merges=*/true));
  ASSERT_NE(strings, nullptr);
  ASSERT_NE(pairs, nullptr);
  for (const std::string text : {"hello world", "hellow orld", "  hello   world  é"}) {
    EXPECT_EQ(Ids(*strings, text), Ids(*pairs, text)) << text;
  }
}

TEST(HfTokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  auto plain = Make(ByteLevelTokenizerJson(false, /*ignore_merges=*/false));
  auto ignore = Make(ByteLevelTokenizerJson(false, /*ignore_merges=*/true));
  ASSERT_NE(ignore, nullptr);
  EXPECT_EQ(Ids(*ignore, "hellox"), std::vector<int32_t>{ignore->TokenToId("hellox")});
  EXPECT_EQ(Ids(*plain, "hellox").size(), 2u);  // "hello" + "x" through merges.
}

TEST(HfTokenizerTest, SpecialTokensAreMatchedAndSkippable) {
  auto tokenizer = Make(ByteLevelTokenizerJson());
  const int32_t bos = tokenizer->TokenToId("<|bos|>");
  const int32_t tool = tokenizer->TokenToId("<tool>");
  const std::vector<int32_t> ids = Ids(*tokenizer, "<|bos|>hello<tool><|bos");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], bos);
  EXPECT_EQ(ids[2], tool);
  EXPECT_TRUE(tokenizer->IsSpecial(bos));
  EXPECT_FALSE(tokenizer->IsSpecial(tool));
  EXPECT_EQ(tokenizer->Decode(ids, false), "<|bos|>hello<tool><|bos");
  EXPECT_EQ(tokenizer->Decode(ids, true), "hello<tool><|bos");
}

TEST(HfTokenizerTest, AddedTokenFlags) {
  nlohmann::json doc = ByteLevelTokenizerJson();
  doc["added_tokens"][0]["lstrip"] = true;       // <|bos|>
  doc["added_tokens"][1]["rstrip"] = true;       // <|eos|>
  doc["added_tokens"][2]["single_word"] = true;  // <tool>
  auto tokenizer = Make(doc);
  const int32_t bos = tokenizer->TokenToId("<|bos|>");
  const int32_t eos = tokenizer->TokenToId("<|eos|>");
  const int32_t tool = tokenizer->TokenToId("<tool>");
  EXPECT_EQ(Ids(*tokenizer, "  <|bos|>"), std::vector<int32_t>{bos});
  EXPECT_EQ(Ids(*tokenizer, "<|eos|>  \n"), std::vector<int32_t>{eos});
  const std::vector<int32_t> spaced = Ids(*tokenizer, "a <tool> b");
  EXPECT_EQ(std::count(spaced.begin(), spaced.end(), tool), 1);
  const std::vector<int32_t> glued = Ids(*tokenizer, "x<tool>y");
  EXPECT_EQ(std::count(glued.begin(), glued.end(), tool), 0);
}

TEST(HfTokenizerTest, BosEosFromPostProcessorAndConfig) {
  auto spm = Make(SpmStyleTokenizerJson());
  ASSERT_NE(spm, nullptr);
  EXPECT_EQ(Ids(*spm, "hi", true), (std::vector<int32_t>{1, spm->TokenToId("\u2581hi")}));
  TokenizerConfig config;
  config.bos_token = "<s>";
  config.eos_token = "</s>";
  config.add_bos_token = false;
  config.add_eos_token = true;
  auto configured = Make(SpmStyleTokenizerJson(), config);
  EXPECT_EQ(configured->bos_id(), 1);
  EXPECT_EQ(configured->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(Ids(*configured, "hi", true),
            (std::vector<int32_t>{configured->TokenToId("\u2581hi"), 2}));
}

TEST(HfTokenizerTest, SentencePieceStyleByteFallbackAndStrip) {
  auto tokenizer = Make(SpmStyleTokenizerJson());
  // 'z' is not in the vocabulary: byte fallback <0x7A>; "é" is; "€" becomes three bytes.
  const std::vector<int32_t> ids = Ids(*tokenizer, "hi zé€");
  EXPECT_EQ(ids[0], tokenizer->TokenToId("\u2581hi"));
  EXPECT_EQ(ids[2], 3 + 'z');
  EXPECT_EQ(tokenizer->Decode(ids, false), "hi zé€");
  EXPECT_EQ(tokenizer->Decode(Ids(*tokenizer, "hi", true), false), "<s> hi");
  EXPECT_EQ(tokenizer->Decode(Ids(*tokenizer, "hi", true), true), "hi");
  // A lone continuation byte token decodes to U+FFFD, as the WHATWG decoder does.
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{3 + 0x80, 3 + 'a'}, false), "\uFFFDa");
}

TEST(HfTokenizerTest, InvalidUtf8IsReplacedNotRejected) {
  auto tokenizer = Make(ByteLevelTokenizerJson());
  const std::string bad = "a\xC3\x28 \xED\xA0\x80 \xF0\x9F\x98";
  ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> ids, tokenizer->Encode(bad, false));
  EXPECT_EQ(tokenizer->Decode(ids, false), "a\uFFFD( \uFFFD\uFFFD\uFFFD \uFFFD");
}

TEST(HfTokenizerTest, DecodeSkipsIdsOutOfRange) {
  auto tokenizer = Make(ByteLevelTokenizerJson());
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{-5, 'a', 1 << 30}, false), "a");
}

void ExpectLoadError(const nlohmann::json& doc, const std::string& fragment) {
  auto tokenizer = HfTokenizer::Create(doc.dump(), TokenizerConfig{});
  ASSERT_FALSE(tokenizer.ok()) << fragment;
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tokenizer.status().message().find(fragment), std::string::npos) << tokenizer.status();
}

TEST(HfTokenizerTest, MalformedTokenizerJsonIsAClearError) {
  nlohmann::json doc = ByteLevelTokenizerJson();
  doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a+)+$";
  ExpectLoadError(doc, "unsupported Split regex");
  doc = ByteLevelTokenizerJson();
  doc["model"]["merges"].push_back("q zz");
  ExpectLoadError(doc, "missing from the vocabulary");
  doc = ByteLevelTokenizerJson();
  doc["model"]["merges"].push_back("a b c");
  ExpectLoadError(doc, "one space");
  doc = ByteLevelTokenizerJson();
  doc["added_tokens"][0]["id"] = 1 << 20;
  ExpectLoadError(doc, "out of range");
  doc = ByteLevelTokenizerJson();
  doc["normalizer"] = {{"type", "Frobnicate"}};
  ExpectLoadError(doc, "'Frobnicate' is not a supported normalizer");
  doc = ByteLevelTokenizerJson();
  doc["model"]["type"] = "Unigram";
  ExpectLoadError(doc, "only BPE");
  doc = ByteLevelTokenizerJson();
  doc["model"]["vocab"]["zzz"] = -1;
  ExpectLoadError(doc, "model.vocab");
}

TEST(HfTokenizerTest, BrokenJsonNeverCrashes) {
  std::string deep(100000, '[');
  for (const std::string& text :
       {std::string("{"), std::string("[]"), std::string("{\"model\": 1, \"model\": 2}"), deep,
        std::string("{\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": [], "
                    "\"merges\": {}}}")}) {
    EXPECT_FALSE(HfTokenizer::Create(text, TokenizerConfig{}).ok());
  }
  const std::string good = ByteLevelTokenizerJson().dump();
  for (size_t cut = 1; cut < good.size(); cut += good.size() / 50) {
    EXPECT_FALSE(HfTokenizer::Create(good.substr(0, cut), TokenizerConfig{}).ok());
  }
}

}  // namespace
}  // namespace iquest
