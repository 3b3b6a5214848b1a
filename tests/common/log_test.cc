// Log values: Kv's quoting and escaping (nothing a client sends can break a line or reach a
// terminal raw) and Truncated's bound on client-supplied strings.
#include "common/log.h"

#include <gtest/gtest.h>

#include <string>

namespace iquest {
namespace {

TEST(KvTest, PlainValuesAreBare) {
  EXPECT_EQ(Kv("k", "abc"), " k=abc");
  EXPECT_EQ(Kv("n", 42), " n=42");
  EXPECT_EQ(Kv("k", ""), " k=\"\"");
}

TEST(KvTest, SpecialBytesAreQuotedAndEscaped) {
  EXPECT_EQ(Kv("k", "a b"), " k=\"a b\"");
  EXPECT_EQ(Kv("k", "say \"hi\""), " k=\"say \\\"hi\\\"\"");
  EXPECT_EQ(Kv("k", "x=1"), " k=\"x=1\"");
  EXPECT_EQ(Kv("k", "line\nfeed"), " k=\"line\\nfeed\"");
  EXPECT_EQ(Kv("k", "cr\rtab\t"), " k=\"cr\\rtab\\t\"");
  // An ANSI escape, a NUL and DEL: none reaches the log raw.
  EXPECT_EQ(Kv("k", std::string("\x1b[31mred", 8)), " k=\"\\x1b[31mred\"");
  EXPECT_EQ(Kv("k", std::string("a\0b", 3)), " k=\"a\\x00b\"");
  EXPECT_EQ(Kv("k", "del\x7f"), " k=\"del\\x7f\"");
  EXPECT_EQ(Kv("k", "back\\slash \\"), " k=\"back\\\\slash \\\\\"");
}

TEST(KvTest, NoEscapedValueHoldsAControlByte) {
  std::string every;
  for (int c = 0; c < 256; ++c) every.push_back(static_cast<char>(c));
  const std::string line = Kv("k", every);
  for (char c : line) {
    const auto byte = static_cast<unsigned char>(c);
    EXPECT_FALSE(byte < 0x20 || byte == 0x7f) << "raw byte " << static_cast<int>(byte);
  }
}

TEST(TruncatedTest, ShortStringsAreUnchanged) {
  EXPECT_EQ(Truncated("abc", 3), "abc");
  EXPECT_EQ(Truncated("", 0), "");
}

TEST(TruncatedTest, LongStringsAreCutAndNameTheirLength) {
  const std::string big(1 << 20, 'a');
  const std::string cut = Truncated(big, 128);
  EXPECT_EQ(cut, std::string(128, 'a') + "...(1048576 bytes)");
}

TEST(TruncatedTest, NoCharacterIsSplit) {
  // "é" is 2 bytes: a cut at 3 would split the second one, so it stops at 2.
  EXPECT_EQ(Truncated("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9...(4 bytes)");
  // A 4-byte character cut anywhere inside goes whole.
  EXPECT_EQ(Truncated("\xf0\x9f\x98\x80z", 2), "...(5 bytes)");
}

}  // namespace
}  // namespace iquest
