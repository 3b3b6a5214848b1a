#include "common/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace iquest {
namespace {

std::string HashHex(const std::string& text) {
  Sha256 hash;
  hash.Update(text.data(), text.size());
  return ToHex(hash.Finish());
}

// FIPS 180-4 / NIST test vectors.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(HashHex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashHex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashHex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(HashHex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  const std::string text(1000, 'x');
  Sha256 hash;
  for (size_t i = 0; i < text.size(); i += 7)
    hash.Update(text.data() + i, std::min<size_t>(7, text.size() - i));
  EXPECT_EQ(ToHex(hash.Finish()), HashHex(text));
}

}  // namespace
}  // namespace iquest
