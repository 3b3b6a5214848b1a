// The regex converter against an independent matcher: std::regex (ECMAScript) decides every
// string over a small alphabet up to length 6 the same way, for patterns whose meaning the two
// dialects share; texts drawn from the grammar all match. Refused constructs name themselves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "tests/structured/structured_testing.h"

namespace iquest {
namespace {

using ::iquest::testing::Accepts;
using ::iquest::testing::Compile;
using ::iquest::testing::Sample;
using ::testing::HasSubstr;

class RegexParityTest : public ::testing::TestWithParam<const char*> {};

void ForEachString(const std::string& alphabet, int max_length,
                   const std::function<void(const std::string&)>& f) {
  std::vector<std::string> level = {""};
  f("");
  for (int len = 1; len <= max_length; ++len) {
    std::vector<std::string> next;
    for (const std::string& s : level) {
      for (char c : alphabet) {
        next.push_back(s + c);
        f(next.back());
      }
    }
    level = std::move(next);
  }
}

TEST_P(RegexParityTest, SameLanguageAsStdRegex) {
  const std::string pattern = GetParam();
  auto m = Compile(ConstraintSpec::kRegex, pattern);
  ASSERT_TRUE(m.ok()) << pattern << ": " << m.status();
  const std::regex reference(pattern, std::regex::ECMAScript);
  int64_t checked = 0, matched = 0;
  ForEachString("ab1-. _", 6, [&](const std::string& s) {
    const bool expected = std::regex_match(s, reference);
    ASSERT_EQ(Accepts(**m, s), expected) << "pattern " << pattern << " text '" << s << "'";
    ++checked;
    matched += expected;
  });
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::string text;
    ASSERT_TRUE(Sample(**m, rng, &text, 0.3, 5000)) << pattern;
    // std::regex reads bytes, and its `.` also refuses \r, so only printable ASCII draws mean
    // the same to it.
    if (std::any_of(text.begin(), text.end(), [](char c) { return c < 0x20 || c & 0x80; })) {
      continue;
    }
    EXPECT_TRUE(std::regex_match(text, reference)) << pattern << " drew '" << text << "'";
  }
  EXPECT_GT(checked, 100000);
  RecordProperty("matched", static_cast<int>(matched));
}

INSTANTIATE_TEST_SUITE_P(Patterns, RegexParityTest,
                         ::testing::Values("a", "ab|b1", "a*b+", "(ab)*", "(?:a|b)?1", "[ab]{2,3}",
                                           "[^ab]{1,2}", "a{0,2}b{3}", "a{2,}", "[a-]+",
                                           "\\d+\\.\\d*", "\\w+ \\w+", "\\s?a\\S", "\\D\\W", ".b.",
                                           "^a(b|1)*$", "(a|ab)(b|)", "[.]_\\-", "(a+|b+)+",
                                           "((a|b)1){1,2}", "[^\\d ]+", "1{1}a{0}",
                                           "[\\w.-]{1,4}"));

TEST(RegexTest, UnicodeLiteralsAndEscapes) {
  auto m = Compile(ConstraintSpec::kRegex, "日本\\u00e9[α-ω]+\\x41");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(Accepts(**m, "日本éαβA"));
  EXPECT_FALSE(Accepts(**m, "日本eαA"));
  // `.` is any character but a newline, as in Python.
  auto dot = Compile(ConstraintSpec::kRegex, "a.b");
  EXPECT_TRUE(Accepts(**dot, "a€b"));
  EXPECT_FALSE(Accepts(**dot, "a\nb"));
}

TEST(RegexTest, PythonCountForms) {
  auto m = Compile(ConstraintSpec::kRegex, "a{,2}b");  // Python: {0,2}.
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(Accepts(**m, "b"));
  EXPECT_TRUE(Accepts(**m, "aab"));
  EXPECT_FALSE(Accepts(**m, "aaab"));
}

TEST(RegexTest, LiteralBracesAreText) {
  auto m = Compile(ConstraintSpec::kRegex, "a{b}{x,}");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(Accepts(**m, "a{b}{x,}"));
}

TEST(RegexTest, UnsupportedConstructsAreRefusedByName) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"(a)\\1", "backreferences"},   {"a(?=b)", "lookaround"},      {"(?<!a)b", "lookaround"},
      {"\\bword", "word boundaries"}, {"(?i)abc", "inline flags"},   {"a++", "possessive"},
      {"a^b", "'^' after the start"}, {"a$b", "'$' before the end"}, {"(a", "missing ')'"},
      {"a)", "unbalanced"},           {"*a", "nothing to repeat"},   {"[z-a]", "range"},
      {"[a", "unterminated"},         {"a{3,1}", "n < m"},           {"[[:alpha:]]", "POSIX"},
      {"\\q", "unknown escape"}};
  for (const auto& [pattern, expected] : cases) {
    auto m = Compile(ConstraintSpec::kRegex, pattern);
    ASSERT_FALSE(m.ok()) << pattern;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << pattern;
    EXPECT_THAT(m.status().message(), HasSubstr(expected)) << pattern;
  }
}

}  // namespace
}  // namespace iquest
