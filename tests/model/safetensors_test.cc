// The safetensors parser against the loader rows of reliability.md (b): every malformed file is
// a clear error naming the file (and the tensor, where there is one), never a crash. This test
// also runs as safetensors_asan_test under AddressSanitizer and UBSan.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {
namespace {

// A file image: 8-byte little-endian header length, the header, then `data_bytes` bytes.
std::string Image(const std::string& header, size_t data_bytes, uint64_t length_override = 0) {
  const uint64_t length = length_override != 0 ? length_override : header.size();
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  out += header;
  out.append(data_bytes, '\x01');
  return out;
}

absl::StatusOr<std::vector<SafetensorsTensor>> Parse(const std::string& image) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                          "model.safetensors");
}

void ExpectError(const std::string& image, const std::string& expected_text) {
  const auto result = Parse(image);
  ASSERT_FALSE(result.ok()) << "accepted: " << expected_text;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_NE(result.status().message().find("model.safetensors"), absl::string_view::npos)
      << result.status();
  EXPECT_NE(result.status().message().find(expected_text), absl::string_view::npos)
      << result.status();
}

TEST(SafetensorsTest, ParsesAValidFile) {
  const std::string image = Image(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
      R"("c":{"dtype":"I64","shape":[],"data_offsets":[32,40]}})",
      40);
  ASSERT_OK_AND_ASSIGN(const auto tensors, Parse(image));
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0].name, "a");
  EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensors[0].dtype, DType::kF32);
  EXPECT_EQ(tensors[1].dtype, DType::kBF16);
  EXPECT_FALSE(tensors[2].dtype.has_value());  // Valid format, not a compute dtype.
  EXPECT_EQ(tensors[1].data - tensors[0].data, 24);
}

TEST(SafetensorsTest, HeaderLengthErrors) {
  ExpectError(std::string("\x05\x00\x00", 3), "too small");
  ExpectError(Image("{}", 0, 1000), "does not fit");              // Past EOF.
  ExpectError(Image("{}", 0, 200'000'000), "exceeds the limit");  // Over 100 MB.
  ExpectError(Image("{}", 0, UINT64_MAX), "exceeds the limit");
  ExpectError(Image("", 0), "does not fit");  // N = 0.
  ExpectError(Image("[1,2,3]", 0), "does not start with '{'");
}

TEST(SafetensorsTest, MalformedJson) {
  ExpectError(Image(R"({"a": {"dtype": "F32",)", 0), "invalid JSON");
  ExpectError(Image("{\"a\xff\": 1}", 0), "invalid JSON");  // Not UTF-8.
  // Deep nesting must not exhaust the stack.
  ExpectError(Image("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0),
              "tensor 'a'");
}

TEST(SafetensorsTest, DuplicateNames) {
  ExpectError(Image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    8),
              "duplicate key 'w'");
}

TEST(SafetensorsTest, OffsetErrors) {
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    12),
              "overlap");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
              "outside the data buffer");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 8),
              "outside the data buffer");  // END < BEGIN.
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8),
              "trailing data");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 8),
              "data_offsets");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 8), "data_offsets");
}

TEST(SafetensorsTest, ShapeAndDTypeErrors) {
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],)"
                    R"("data_offsets":[0,4]}})",
                    4),
              "overflows");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
              "non-negative");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":["x"],"data_offsets":[0,4]}})", 4),
              "non-negative");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
              "non-negative");
  ExpectError(Image(R"({"a":{"dtype":"F8_E9M0","shape":[4],"data_offsets":[0,4]}})", 4),
              "unknown dtype");
  ExpectError(Image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
              "shape and dtype need 12");
  ExpectError(Image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "'dtype'");
  ExpectError(Image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "'shape'");
  ExpectError(Image(R"({"a":7})", 0), "tensor 'a'");
  ExpectError(Image(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
}

TEST(SafetensorsTest, ManyEntriesStayBoundedByTheFile) {
  // 100k zero-sized tensors: legal, and memory stays proportional to the header.
  std::string header = "{";
  for (int i = 0; i < 100000; ++i) {
    if (i > 0) header.append(",");
    header.append("\"t").append(std::to_string(i));
    header.append(R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})");
  }
  header += "}";
  ASSERT_OK_AND_ASSIGN(const auto tensors, Parse(Image(header, 0)));
  EXPECT_EQ(tensors.size(), 100000u);
}

TEST(SafetensorsFileTest, TruncatedFileNamesThePath) {
  testing::TempDir dir;
  const std::string full =
      Image(R"({"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}})", 256);
  const std::string path = dir.Join("model.safetensors");
  std::ofstream(path, std::ios::binary) << full.substr(0, full.size() / 2);
  const auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find(path), absl::string_view::npos) << file.status();
  EXPECT_NE(file.status().message().find("tensor 'a'"), absl::string_view::npos) << file.status();
}

TEST(SafetensorsFileTest, MissingAndEmptyFiles) {
  testing::TempDir dir;
  EXPECT_STATUS_CODE(SafetensorsFile::Open(dir.Join("absent.safetensors")),
                     absl::StatusCode::kNotFound);
  std::ofstream(dir.Join("empty.safetensors"));
  EXPECT_STATUS_CODE(SafetensorsFile::Open(dir.Join("empty.safetensors")),
                     absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
