// Randomised checks: streamed decoding equals one-shot decoding and never emits broken UTF-8;
// random bytes never crash encoding; both BPE merge loops agree on random merge tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "model/tokenizer/bpe_merge.h"
#include "model/tokenizer/decode_stream.h"
#include "model/tokenizer/hf_tokenizer.h"
#include "model/tokenizer/unicode.h"
#include "tests/model/tokenizer/mini_tokenizers.h"

namespace iquest {
namespace {

std::unique_ptr<Tokenizer> MakeByteLevel(bool clean_up) {
  TokenizerConfig config;
  config.clean_up_tokenization_spaces = clean_up;
  auto tokenizer = HfTokenizer::Create(testing::ByteLevelTokenizerJson().dump(), config);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return std::move(*tokenizer);
}

std::string RandomBytes(std::mt19937& rng, size_t max_len) {
  // Bias towards bytes that form (and break) UTF-8 and the clean-up patterns.
  static const std::string kAlphabet =
      " .,!?'nstmrevl\n\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x80\xFF";
  std::string out(rng() % (max_len + 1), ' ');
  for (char& c : out)
    c = rng() % 4 == 0 ? static_cast<char>(rng()) : kAlphabet[rng() % kAlphabet.size()];
  return out;
}

TEST(StreamFuzzTest, IncrementalDecodeEqualsDecodeAndIsAlwaysValidUtf8) {
  std::mt19937 rng(42);
  for (const bool clean_up : {false, true}) {
    auto tokenizer = MakeByteLevel(clean_up);
    for (int round = 0; round < 2000; ++round) {
      std::vector<int32_t> ids(rng() % 20);
      for (int32_t& id : ids) id = static_cast<int32_t>(rng() % (tokenizer->vocab_size() + 2)) - 1;
      const bool skip = rng() % 2 == 0;
      IncrementalDetokenizer detokenizer(*tokenizer, skip);
      std::string streamed;
      for (const int32_t id : ids) {
        const std::string piece = detokenizer.Push(id);
        ASSERT_TRUE(unicode::IsValidUtf8(piece));
        streamed += piece;
      }
      streamed += detokenizer.Flush();
      ASSERT_EQ(streamed, tokenizer->Decode(ids, skip)) << "round " << round;
    }
  }
}

TEST(StreamFuzzTest, RandomBytesEncodeAndRoundTrip) {
  std::mt19937 rng(7);
  auto byte_level = MakeByteLevel(false);
  auto spm = HfTokenizer::Create(testing::SpmStyleTokenizerJson().dump(), TokenizerConfig{});
  ASSERT_TRUE(spm.ok());
  for (int round = 0; round < 3000; ++round) {
    const std::string text = RandomBytes(rng, 80);
    const std::string repaired = unicode::RepairUtf8(text);
    auto ids = byte_level->Encode(text, rng() % 2 == 0);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(byte_level->Decode(*ids, true), repaired);
    auto spm_ids = (*spm)->Encode(text, true);
    ASSERT_TRUE(spm_ids.ok());
    EXPECT_TRUE(unicode::IsValidUtf8((*spm)->Decode(*spm_ids, false)));
  }
}

TEST(StreamFuzzTest, CleanUpMatchesSequentialReplacement) {
  EXPECT_EQ(CleanUpTokenization("a , b . c ' d do n't I 'm it 's we 've they 're"),
            "a, b. c'd don't I'm it's we've they're");
  // Pass by pass, like transformers: " ' " first, which makes a " 's" for a later pass.
  EXPECT_EQ(CleanUpTokenization("x  ' s"), "x's");
}

TEST(StreamFuzzTest, HeapAndRankMergesAgree) {
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    // Random merges over ids 0..7 producing ids 8.., with ranks a random permutation of
    // 0..n-1 (so the list is usually not in creation order).
    BpeMergeMap merges;
    const int num_merges = 1 + static_cast<int>(rng() % 40);
    std::vector<int32_t> ranks(num_merges);
    std::iota(ranks.begin(), ranks.end(), 0);
    std::shuffle(ranks.begin(), ranks.end(), rng);
    int32_t next_id = 8;
    for (int r = 0; r < num_merges; ++r) {
      const auto left = static_cast<int32_t>(rng() % next_id);
      const auto right = static_cast<int32_t>(rng() % next_id);
      merges.try_emplace(BpePairKey(left, right), BpeMerge{ranks[r], next_id++});
    }
    std::vector<BpeSymbol> word(1 + rng() % 300);
    for (size_t i = 0; i < word.size(); ++i) {
      word[i] = BpeSymbol{static_cast<int32_t>(rng() % 3), static_cast<int32_t>(i) - 1,
                          i + 1 < word.size() ? static_cast<int32_t>(i + 1) : -1, 1};
    }
    std::vector<BpeSymbol> by_heap = word, by_rank = word;
    MergeWithHeap(merges, &by_heap);
    MergeByRank(merges, &by_rank);
    for (size_t i = 0; i < word.size(); ++i) {
      ASSERT_EQ(by_heap[i].len, by_rank[i].len) << "round " << round << " symbol " << i;
      if (by_heap[i].len > 0) {
        ASSERT_EQ(by_heap[i].id, by_rank[i].id);
      }
    }
  }
}

}  // namespace
}  // namespace iquest
