// The byte grammar, the GBNF parser and the matcher's masks: languages checked on hand-picked
// texts, masks checked against a brute-force walk of every token, errors naming their cause.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "structured/gbnf.h"
#include "tests/structured/structured_testing.h"

namespace iquest {
namespace {

using ::iquest::testing::Accepts;
using ::iquest::testing::ByteVocabulary;
using ::iquest::testing::Compile;
using ::testing::HasSubstr;

std::shared_ptr<GrammarMatcher> Gbnf(const std::string& text,
                                     std::shared_ptr<const TokenVocabulary> v = ByteVocabulary()) {
  auto m = Compile(ConstraintSpec::kGrammar, text, std::move(v));
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : nullptr;
}

std::string GbnfError(const std::string& text) {
  auto m = Compile(ConstraintSpec::kGrammar, text);
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : std::string(m.status().message());
}

TEST(GbnfTest, LiteralsClassesGroupsAndRepetitions) {
  auto m = Gbnf(R"(
    # a comment
    root ::= greeting (", " name)* "!"?
    greeting ::= "hi" | "hello"
    name ::= [A-Z] [a-z]{1,3}
  )");
  ASSERT_NE(m, nullptr);
  for (const char* ok : {"hi", "hello!", "hi, Bob", "hello, Al, Xyz!"}) {
    EXPECT_TRUE(Accepts(*m, ok)) << ok;
  }
  for (const char* bad : {"", "hey", "hi, bob", "hi, Abcde", "hi!!", "hi, A"}) {
    EXPECT_FALSE(Accepts(*m, bad)) << bad;
  }
}

TEST(GbnfTest, UnicodeClassesAndAnyCharacterStayValidUtf8) {
  auto m = Gbnf(R"g(root ::= [^a-z]+ "." .)g");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(Accepts(*m, "ÉÀ.x"));
  EXPECT_TRUE(Accepts(*m, "日本.語"));
  EXPECT_FALSE(Accepts(*m, "a.x"));
  EXPECT_FALSE(Accepts(*m, "\xC3.x"));          // A lone lead byte is no character.
  EXPECT_FALSE(Accepts(*m, "\xED\xA0\x80.x"));  // An encoded surrogate is not UTF-8.
}

TEST(GbnfTest, EscapesAndCounts) {
  auto m = Gbnf(R"g(root ::= "\x41\u00e9\n\"" [\]\-]{2} "x"{2,} )g");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(Accepts(*m, "Aé\n\"]-xx"));
  EXPECT_TRUE(Accepts(*m, "Aé\n\"--xxxxx"));
  EXPECT_FALSE(Accepts(*m, "Aé\n\"]-x"));
}

TEST(GbnfTest, RecursionNestsAndRepetitionStaysFlat) {
  auto m = Gbnf(R"g(root ::= "(" root ")" | "x")g");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(Accepts(*m, "((((x))))"));
  EXPECT_FALSE(Accepts(*m, "((x)"));
  // A long repetition keeps one short stack (the tail call), so the state does not grow.
  auto r = Gbnf(R"g(root ::= "a"*)g");
  GrammarState s = r->initial();
  ASSERT_TRUE(r->AdvanceBytes(s, std::string(10000, 'a')));
  EXPECT_TRUE(s.accepting());
  EXPECT_LT(s.key.size(), 16u);
}

TEST(GbnfTest, ErrorsNameTheCause) {
  EXPECT_THAT(GbnfError(""), HasSubstr("empty"));
  EXPECT_THAT(GbnfError("start ::= \"a\""), HasSubstr("no 'root' rule"));
  EXPECT_THAT(GbnfError("root ::= foo"), HasSubstr("'foo' is used but never defined"));
  EXPECT_THAT(GbnfError("root ::= \"a\"\nroot ::= \"b\""), HasSubstr("defined twice"));
  EXPECT_THAT(GbnfError("root ::= root \"a\" | \"b\""), HasSubstr("left-recursive"));
  EXPECT_THAT(GbnfError("root ::= (\"a\"? )* \"b\""), HasSubstr("left-recursive"));
  EXPECT_THAT(GbnfError("root ::= \"abc"), HasSubstr("line 1"));
  EXPECT_THAT(GbnfError("root ::=\n  [z-a]"), HasSubstr("line 2"));
  EXPECT_THAT(GbnfError("root ::= \"a\"{3,1}"), HasSubstr("n < m"));
  EXPECT_THAT(GbnfError("root ::= \"a\"{99999999}"), HasSubstr("repetition count above"));
  EXPECT_THAT(GbnfError("root ::= \"\\q\""), HasSubstr("unknown escape"));
  EXPECT_THAT(GbnfError("root ::= ( \"a\" "), HasSubstr("expected ')'"));
}

// The mask from the trie walk equals the brute-force answer: token t is allowed iff its bytes
// advance the state.
TEST(GrammarMatcherTest, MaskEqualsTokenByTokenAdvance) {
  std::vector<std::string> extra = {"ab", "abc",  "abd", "b",   "bcd", "\"",   "\":",  "{\"",
                                    "}",  "aaaa", "ca",  "cab", "é",   "\xC3", "\xA9", "ab"};
  auto vocab = ByteVocabulary(extra);
  auto m = Gbnf(R"g(root ::= "{\"" [a-c]+ "\":" ("é" | [0-9])* "}")g", vocab);
  ASSERT_NE(m, nullptr);
  std::vector<std::string> prefixes = {"",        "{",        "{\"",         "{\"ab",    "{\"abc\"",
                                       "{\"a\":", "{\"a\":é", "{\"a\":\xC3", "{\"a\":1}"};
  for (const std::string& prefix : prefixes) {
    GrammarState state = m->initial();
    ASSERT_TRUE(m->AdvanceBytes(state, prefix)) << prefix;
    const auto mask = m->Mask(state);
    for (int32_t t = 0; t < vocab->vocab_size(); ++t) {
      GrammarState copy = state;
      EXPECT_EQ(MaskAllows(*mask, t), m->Advance(copy, t))
          << "prefix '" << prefix << "' token " << t << " '" << vocab->bytes(t) << "'";
    }
  }
}

TEST(GrammarMatcherTest, ExcludedTokensAreNeverAllowed) {
  std::vector<std::string> bytes = {"a", "b", "<eos>", "ab", ""};
  std::vector<bool> excluded = {false, false, true, false, false};
  auto vocab = std::make_shared<TokenVocabulary>(bytes, excluded);
  auto m = Compile(ConstraintSpec::kRegex, "[a-z<>]+", vocab);
  ASSERT_TRUE(m.ok());
  const auto mask = (*m)->Mask((*m)->initial());
  EXPECT_TRUE(MaskAllows(*mask, 0));
  EXPECT_TRUE(MaskAllows(*mask, 3));
  EXPECT_FALSE(MaskAllows(*mask, 2));  // Special: only EOS handling may allow it.
  EXPECT_FALSE(MaskAllows(*mask, 4));  // No bytes.
}

TEST(GrammarMatcherTest, CompleteStateAllowsNothingMore) {
  auto m = Compile(ConstraintSpec::kChoice, "");
  ASSERT_FALSE(m.ok());  // No choices.
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kChoice;
  spec.choices = {"yes", "no", "yesno"};
  auto g = CompileConstraint(spec, GrammarLimits());
  ASSERT_TRUE(g.ok());
  GrammarMatcher matcher(*std::move(g), ByteVocabulary());
  GrammarState s = matcher.initial();
  ASSERT_TRUE(matcher.AdvanceBytes(s, "yes"));
  EXPECT_TRUE(s.accepting());
  EXPECT_FALSE(s.complete());  // "yesno" may still follow.
  ASSERT_TRUE(matcher.AdvanceBytes(s, "no"));
  EXPECT_TRUE(s.complete());
  const auto mask = matcher.Mask(s);
  for (uint64_t word : *mask) EXPECT_EQ(word, 0u);
}

TEST(GrammarMatcherTest, CachedMasksAreReusedAndFlushesKeepAnswers) {
  auto m = Gbnf(R"g(root ::= "[" ("(" | ")")* "]")g");
  ASSERT_NE(m, nullptr);
  GrammarState s = m->initial();
  ASSERT_TRUE(m->AdvanceBytes(s, "["));
  const auto first = m->Mask(s);
  const auto again = m->Mask(s);
  EXPECT_EQ(first.get(), again.get());
  EXPECT_GE(m->stats().num_mask_cache_hits, 1);
}

TEST(GrammarMatcherTest, PastTheStateCapTheCacheFlushesAndStatesStillAdvance) {
  // Every count is its own DFA state; past kMaxStates the cache is dropped between calls and the
  // requests' states (kept by value) still advance.
  const int count = GrammarMatcher::kMaxStates + 2000;
  auto m = Compile(ConstraintSpec::kRegex, "[ab]{0," + std::to_string(count) + "}");
  ASSERT_TRUE(m.ok()) << m.status();
  GrammarState s = (*m)->initial();
  for (int i = 0; i < count; ++i) {
    if (i % 100 == 0) (*m)->Mask(s);
    ASSERT_TRUE((*m)->AdvanceBytes(s, i % 2 ? "a" : "b")) << i;
  }
  EXPECT_GT((*m)->stats().num_flushes, 0);
  EXPECT_TRUE(s.complete());
}

TEST(GrammarMatcherTest, NestingDeeperThanTheStackCapIsRefused) {
  auto m = Gbnf(R"g(root ::= "(" root ")" | "x")g");
  ASSERT_NE(m, nullptr);
  GrammarState s = m->initial();
  const int depth = GrammarMatcher::kMaxStackDepth - 2;
  ASSERT_TRUE(m->AdvanceBytes(s, std::string(depth, '(')));
  ASSERT_TRUE(m->AdvanceBytes(s, "x" + std::string(depth, ')')));
  EXPECT_TRUE(s.complete());
  GrammarState deep = m->initial();
  EXPECT_FALSE(m->AdvanceBytes(deep, std::string(GrammarMatcher::kMaxStackDepth + 1, '(')));
}

TEST(GrammarBuilderTest, SizeAndTimeLimitsFailTheCompile) {
  GrammarLimits limits;
  limits.max_elements = 1000;
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::kRegex;
  spec.text = "[a-z]{500}[0-9]{600}";
  auto big = CompileConstraint(spec, limits);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("elements"));
  GrammarLimits past;
  past.deadline = absl::Now() - absl::Seconds(1);
  spec.text = "a{1,2000}";
  auto late = CompileConstraint(spec, past);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(GrammarCacheTest, SameSpecCompilesOnceAndErrorsAreInvalidArgument) {
  GrammarCache cache(ByteVocabulary(), 2, absl::Seconds(5));
  ConstraintSpec a{ConstraintSpec::kRegex, "[0-9]+", {}};
  auto first = cache.Get(a);
  auto second = cache.Get(a);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->get(), second->get());
  EXPECT_EQ(cache.stats().num_compiled, 1);
  EXPECT_EQ(cache.stats().num_hits, 1);
  auto bad = cache.Get({ConstraintSpec::kRegex, "(a", {}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  auto nothing = cache.Get({ConstraintSpec::kGrammar, "root ::= [^\\x00-\\U0010FFFF]", {}});
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = cache.Get({ConstraintSpec::kGrammar, "root ::= \"\"", {}});
  EXPECT_THAT(empty.status().message(), HasSubstr("only the empty text"));
  // Capacity 2: the oldest goes.
  ASSERT_TRUE(cache.Get({ConstraintSpec::kRegex, "b", {}}).ok());
  ASSERT_TRUE(cache.Get({ConstraintSpec::kRegex, "c", {}}).ok());
  ASSERT_TRUE(cache.Get(a).ok());
  EXPECT_EQ(cache.stats().num_compiled, 4);
  EXPECT_EQ(cache.stats().num_failed, 3);
}

}  // namespace
}  // namespace iquest
