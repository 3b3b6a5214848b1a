// The GGUF reader against the writer (round trip) and against every class of malformed file in
// reliability.md (b): each is kInvalidArgument naming what is wrong, and nothing crashes, not
// even on every truncation and on thousands of random byte mutations of a valid file.
#include "model/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <random>
#include <sstream>

#include "kernels/cpu/cpu_backend.h"
#include "model/checkpoint.h"
#include "model/gguf_writer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {
namespace {

// Hand-assembled GGUF bytes, for files the writer would never produce.
struct Raw {
  std::string bytes;

  Raw& U32(uint32_t v) {
    bytes.append(reinterpret_cast<const char*>(&v), 4);
    return *this;
  }
  Raw& U64(uint64_t v) {
    bytes.append(reinterpret_cast<const char*>(&v), 8);
    return *this;
  }
  Raw& Str(std::string_view s) {
    U64(s.size());
    bytes.append(s);
    return *this;
  }
  Raw& Header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    bytes.append("GGUF");
    U32(version);
    U64(tensors);
    return U64(kvs);
  }
  Raw& KvU32(std::string_view key, uint32_t value) {
    Str(key);
    U32(static_cast<uint32_t>(GgufValueType::kU32));
    return U32(value);
  }
  // dims innermost-first, as stored.
  Raw& Info(std::string_view name, std::initializer_list<uint64_t> dims, uint32_t type,
            uint64_t offset) {
    Str(name);
    U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    U32(type);
    return U64(offset);
  }
  Raw& PadTo(size_t alignment) {
    bytes.append((alignment - bytes.size() % alignment) % alignment, '\0');
    return *this;
  }
  Raw& Zeros(size_t n) {
    bytes.append(n, '\0');
    return *this;
  }
};

absl::StatusOr<GgufContents> Parse(const std::string& bytes) {
  return ParseGguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.gguf");
}

// The parse fails with kInvalidArgument and a message holding every one of `parts`.
void ExpectRejected(const std::string& bytes, std::initializer_list<std::string_view> parts) {
  const absl::Status status = Parse(bytes).status();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("bad.gguf"), std::string_view::npos) << status;
  const std::string message(status.message());
  for (std::string_view part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "expected '" << part << "' in: " << status;
  }
}

// A valid one-tensor file: f32 [2, 3] ("w") at offset 0, alignment 32.
Raw ValidFile() {
  Raw raw;
  raw.Header(1, 1).KvU32("general.alignment", 32).Info("w", {3, 2}, 0, 0).PadTo(32).Zeros(24);
  return raw;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<uint8_t> Iota(size_t n) {
  std::vector<uint8_t> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  return bytes;
}

GgufWriter::DataSource Bytes(const std::vector<uint8_t>& bytes) {
  return [&bytes](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
    return std::span<const uint8_t>(bytes);
  };
}

TEST(GgufTest, RoundTripsThroughTheWriter) {
  testing::TempDir dir;
  const std::vector<uint8_t> a = Iota(2 * 3 * 4 * 4), b = Iota(5 * 2), c = Iota(7 * 2);
  GgufWriter writer(64);
  writer.SetString("general.architecture", "llama");
  writer.SetU32("llama.block_count", 7);
  writer.SetI32("answer", -42);
  writer.SetF32("llama.rope.freq_base", 500000.0f);
  writer.SetBool("flag", true);
  writer.SetStringArray("tokenizer.ggml.tokens", {"<s>", "", "héllo"});
  writer.SetF32Array("tokenizer.ggml.scores", {0.5f, -1.0f});
  writer.SetI32Array("tokenizer.ggml.token_type", {1, 3, 6});
  writer.AddTensor("a", GgmlType::kF32, {2, 3, 4}, Bytes(a));  // Row-major [2, 3, 4].
  writer.AddTensor("b", GgmlType::kBF16, {5}, Bytes(b));
  writer.AddTensor("c", GgmlType::kF16, {7, 1}, Bytes(c));
  ASSERT_OK(writer.Write(dir.Join("x.gguf")));

  ASSERT_OK_AND_ASSIGN(auto file, GgufFile::Open(dir.Join("x.gguf")));
  const GgufContents& contents = file->contents();
  EXPECT_EQ(contents.version, 3u);
  EXPECT_EQ(contents.alignment, 64u);
  EXPECT_EQ(contents.data_offset % 64, 0u);
  ASSERT_OK_AND_ASSIGN(std::string_view arch, file->GetString("general.architecture"));
  EXPECT_EQ(arch, "llama");
  EXPECT_EQ(*file->GetInt("llama.block_count", 0, 100), 7);
  EXPECT_EQ(*file->GetInt("answer", -100, 0), -42);
  EXPECT_EQ(*file->GetFloat("llama.rope.freq_base"), 500000.0);
  EXPECT_EQ(file->Find("flag")->AsInt(), 1);
  ASSERT_OK_AND_ASSIGN(const GgufValue* tokens,
                       file->GetArray("tokenizer.ggml.tokens", GgufValueType::kString));
  EXPECT_EQ(tokens->strings, (std::vector<std::string_view>{"<s>", "", "héllo"}));
  ASSERT_OK_AND_ASSIGN(const GgufValue* scores,
                       file->GetArray("tokenizer.ggml.scores", GgufValueType::kF32));
  EXPECT_EQ(scores->AsFloat(1), -1.0);
  ASSERT_OK_AND_ASSIGN(const GgufValue* types,
                       file->GetArray("tokenizer.ggml.token_type", GgufValueType::kI32));
  EXPECT_EQ(types->AsInt(2), 6);

  ASSERT_EQ(file->tensors().size(), 3u);
  const GgufTensor* ta = file->FindTensor("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(ta->dtype, DType::kF32);
  EXPECT_EQ(std::vector<uint8_t>(ta->data, ta->data + ta->num_bytes), a);
  const GgufTensor* tb = file->FindTensor("b");
  EXPECT_EQ(tb->dtype, DType::kBF16);
  EXPECT_EQ(tb->offset % 64, 0u);
  EXPECT_EQ(std::vector<uint8_t>(tb->data, tb->data + tb->num_bytes), b);
  const GgufTensor* tc = file->FindTensor("c");
  EXPECT_EQ(tc->shape, (std::vector<int64_t>{7, 1}));
  EXPECT_EQ(std::vector<uint8_t>(tc->data, tc->data + tc->num_bytes), c);

  // Dims are stored innermost-first: "a" is ne = [4, 3, 2] on disk.
  const std::string bytes = ReadFile(dir.Join("x.gguf"));
  const std::string needle = std::string("\x01\0\0\0\0\0\0\0a\x03\0\0\0", 13) +
                             std::string("\x04\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\0\x02", 17);
  EXPECT_NE(bytes.find(needle), std::string::npos);
}

TEST(GgufTest, TypedLookupsNameTheKeyAndTheRange) {
  Raw raw;
  raw.Header(0, 1).KvU32("llama.block_count", 9000);
  const std::string bytes = raw.bytes;
  testing::TempDir dir;
  std::ofstream(dir.Join("k.gguf"), std::ios::binary) << bytes;
  ASSERT_OK_AND_ASSIGN(auto file, GgufFile::Open(dir.Join("k.gguf")));
  const absl::Status range = file->GetInt("llama.block_count", 1, 4096).status();
  EXPECT_EQ(range.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(range.message().find("'llama.block_count' is 9000 (allowed: 1..4096)"),
            std::string_view::npos)
      << range;
  EXPECT_EQ(file->GetString("llama.block_count").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file->GetFloat("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(GgufTest, AcceptsVersion2AndTheDefaultAlignment) {
  Raw raw;
  raw.Header(1, 0, /*version=*/2).Info("w", {4}, 1, 0).PadTo(32).Zeros(8);
  ASSERT_OK_AND_ASSIGN(GgufContents contents, Parse(raw.bytes));
  EXPECT_EQ(contents.version, 2u);
  EXPECT_EQ(contents.alignment, 32u);
  EXPECT_EQ(contents.tensors[0].dtype, DType::kF16);
}

TEST(GgufTest, TruncatedOrEmptyHeader) {
  ExpectRejected("", {"truncated", "magic"});
  ExpectRejected("GGU", {"truncated", "magic"});
  ExpectRejected(std::string("GGUF\x03\0\0\0", 8), {"truncated", "tensor count"});
}

TEST(GgufTest, EveryTruncationOfAValidFileIsAnError) {
  const std::string bytes = ValidFile().bytes;
  ASSERT_OK(Parse(bytes).status());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_FALSE(Parse(bytes.substr(0, size)).ok()) << size;
  }
}

TEST(GgufTest, BadMagicAndVersions) {
  std::string bytes = ValidFile().bytes;
  bytes[0] = 'X';
  ExpectRejected(bytes, {"bad magic", "GGUF"});
  for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
    Raw raw;
    raw.Header(0, 0, version);
    ExpectRejected(raw.bytes, {"version", "supported: 2, 3"});
  }
}

TEST(GgufTest, CountsLargerThanTheFile) {
  Raw tensors;
  tensors.Header(uint64_t{1} << 63, 0);
  ExpectRejected(tensors.bytes, {"tensor count 9223372036854775808"});
  Raw kvs;
  kvs.Header(0, uint64_t{1} << 63);
  ExpectRejected(kvs.bytes, {"metadata count 9223372036854775808"});
  Raw array;
  array.Header(0, 1).Str("a").U32(9).U32(4).U64(uint64_t{1} << 62);
  ExpectRejected(array.bytes, {"key 'a'", "array elements"});
  Raw strings;
  strings.Header(0, 1).Str("a").U32(9).U32(8).U64(1000);
  ExpectRejected(strings.bytes, {"key 'a'", "claims 1000 array elements"});
}

TEST(GgufTest, StringLengthsPastTheEnd) {
  Raw key;
  key.Header(0, 1).U64(uint64_t{1} << 63).Zeros(8);
  ExpectRejected(key.bytes, {"metadata key 0"});
  Raw value;
  value.Header(0, 1).Str("general.name").U32(8).U64(100).Zeros(10);
  ExpectRejected(value.bytes, {"truncated", "key 'general.name'"});
  Raw element;
  element.Header(0, 1).Str("t").U32(9).U32(8).U64(2).Str("ok").U64(uint64_t{1} << 63);
  ExpectRejected(element.bytes, {"truncated", "key 't'", "element 1"});
  Raw name;
  name.Header(1, 0).U64(uint64_t{1} << 40).Zeros(40);
  ExpectRejected(name.bytes, {"name of tensor 0"});
}

TEST(GgufTest, UnknownValueTypesAndNestedArrays) {
  Raw scalar;
  scalar.Header(0, 1).Str("k").U32(13).U32(0);
  ExpectRejected(scalar.bytes, {"key 'k'", "unknown value type 13"});
  Raw element;
  element.Header(0, 1).Str("k").U32(9).U32(99).U64(0);
  ExpectRejected(element.bytes, {"key 'k'", "unknown value type 99"});
  Raw nested;
  nested.Header(0, 1).Str("k").U32(9).U32(9).U64(1).U32(4).U64(1).U32(7);
  ExpectRejected(nested.bytes, {"key 'k'", "nested arrays are not supported"});
  Raw boolean;
  boolean.Header(0, 1).Str("k").U32(7);
  boolean.bytes.push_back('\x02');
  ExpectRejected(boolean.bytes, {"key 'k'", "bool", "0 or 1"});
}

TEST(GgufTest, DuplicateKeysAndTensorNames) {
  Raw keys;
  keys.Header(0, 2).KvU32("a.b", 1).KvU32("a.b", 2);
  ExpectRejected(keys.bytes, {"duplicate metadata key 'a.b'"});
  Raw tensors;
  tensors.Header(2, 0).Info("w", {4}, 0, 0).Info("w", {4}, 0, 32).PadTo(32).Zeros(64);
  ExpectRejected(tensors.bytes, {"duplicate tensor name 'w'"});
}

TEST(GgufTest, BadDims) {
  Raw zero;
  zero.Header(1, 0).Info("w", {4, 0}, 0, 0).PadTo(32).Zeros(16);
  ExpectRejected(zero.bytes, {"tensor 'w' dim 1 is 0"});
  Raw rank5;
  rank5.Header(1, 0).Info("w", {1, 1, 1, 1, 1}, 0, 0).PadTo(32).Zeros(4);
  ExpectRejected(rank5.bytes, {"tensor 'w' has 5 dims", "1..4"});
  Raw rank0;
  rank0.Header(1, 0).Info("w", {}, 0, 0).PadTo(32).Zeros(4);
  ExpectRejected(rank0.bytes, {"tensor 'w' has 0 dims"});
  Raw overflow;
  overflow.Header(1, 0).Info("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0).PadTo(32);
  ExpectRejected(overflow.bytes, {"tensor 'w'", "overflows"});
  Raw bytes_overflow;  // 2^62 elements fit in 63 bits; 2^62 f32 bytes do not fit in 64.
  bytes_overflow.Header(1, 0).Info("w", {uint64_t{1} << 62}, 0, 0).PadTo(32);
  ExpectRejected(bytes_overflow.bytes, {"tensor 'w'", "byte size overflows"});
  Raw long_name;
  long_name.Header(1, 0).Info(std::string(65, 'n'), {4}, 0, 0).PadTo(32).Zeros(16);
  ExpectRejected(long_name.bytes, {"name of tensor 0", "65 bytes", "limit of 64"});
}

TEST(GgufTest, OffsetsPastTheEndMisalignedOrOverlapping) {
  Raw past;
  past.Header(1, 0).Info("w", {4}, 0, 0).PadTo(32).Zeros(15);
  ExpectRejected(past.bytes, {"tensor 'w'", "ends past the file"});
  Raw huge;
  huge.Header(1, 0).Info("w", {4}, 0, ~uint64_t{0} / 32 * 32).PadTo(32).Zeros(16);
  ExpectRejected(huge.bytes, {"tensor 'w'", "ends past the file"});
  Raw misaligned;
  misaligned.Header(1, 0).Info("w", {4}, 0, 4).PadTo(32).Zeros(32);
  ExpectRejected(misaligned.bytes, {"tensor 'w' data offset 4", "alignment 32"});
  Raw overlap;
  overlap.Header(2, 0).Info("a", {16}, 0, 0).Info("b", {4}, 0, 32).PadTo(32).Zeros(64);
  ExpectRejected(overlap.bytes, {"tensor 'b' data overlaps tensor 'a'"});
}

TEST(GgufTest, BadAlignment) {
  for (uint32_t alignment : {0u, 3u, 48u}) {
    Raw raw;
    raw.Header(0, 1).KvU32("general.alignment", alignment);
    ExpectRejected(raw.bytes, {"general.alignment", "power of two"});
  }
  Raw typed;
  typed.Header(0, 1).Str("general.alignment").U32(10).U64(32);
  ExpectRejected(typed.bytes, {"general.alignment", "must be u32, got u64"});
}

TEST(GgufTest, QuantizedTensorsSpanWholeBlocksPerRow) {
  // Q4_K [2, 256]: two rows of one 144-byte super-block; Q8_0 [32]: one 34-byte block.
  Raw raw;
  raw.Header(2, 0).Info("k", {256, 2}, 12, 0).Info("q", {32}, 8, 320).PadTo(32).Zeros(320 + 34);
  ASSERT_OK_AND_ASSIGN(const GgufContents contents, Parse(raw.bytes));
  ASSERT_EQ(contents.tensors.size(), 2u);
  const GgufTensor& k = contents.tensors[0];
  EXPECT_EQ(k.quant, QuantType::kQ4_K);
  EXPECT_EQ(k.dtype, DType::kF32);  // What it dequantizes to.
  EXPECT_EQ(k.shape, (std::vector<int64_t>{2, 256}));
  EXPECT_EQ(k.num_bytes, 288u);
  const GgufTensor& q = contents.tensors[1];
  EXPECT_EQ(q.quant, QuantType::kQ8_0);
  EXPECT_EQ(q.num_bytes, 34u);
  // One byte short of the Q8_0 block: the data range check names the tensor.
  raw.bytes.pop_back();
  ExpectRejected(raw.bytes, {"tensor 'q'", "34 bytes", "ends past"});
}

TEST(GgufTest, QuantizedRowsMustBeWholeBlocks) {
  Raw q8;
  q8.Header(1, 0).Info("x", {33}, 8, 0).PadTo(32).Zeros(64);
  ExpectRejected(q8.bytes, {"tensor 'x' rows", "q8_0", "blocks of 32", "a row of 33"});
  Raw q4k;  // 128 weights: a Q4_K super-block holds 256.
  q4k.Header(1, 0).Info("blk.0.attn_q.weight", {128, 2}, 12, 0).PadTo(32).Zeros(288);
  ExpectRejected(q4k.bytes, {"tensor 'blk.0.attn_q.weight' rows", "blocks of 256"});
}

TEST(GgufTest, UnsupportedAndUnknownTensorTypes) {
  for (const uint32_t type : {3u, 6u, 10u, 11u, 15u, 23u}) {  // Q4_1, Q5_0, Q2_K, Q3_K, ...
    Raw raw;
    raw.Header(1, 0).Info("blk.0.attn_q.weight", {256}, type, 0).PadTo(32).Zeros(256);
    ExpectRejected(raw.bytes, {"tensor 'blk.0.attn_q.weight'", GgmlTypeName(type), "not supported",
                               "F32 (0), F16 (1), BF16 (30)", "Q4_K (12)", "Q6_K (14)"});
  }
  Raw unknown;
  unknown.Header(1, 0).Info("x", {4}, 99, 0).PadTo(32).Zeros(16);
  ExpectRejected(unknown.bytes, {"tensor 'x'", "unknown (99)"});
}

// A Q8_0 block whose f16 scale is `scale_bits` (NaN, inf), opened as a checkpoint: refused, naming
// the file and the tensor, before any weight is dequantized.
TEST(GgufTest, NonFiniteQuantScalesAreLoadErrors) {
  for (const uint16_t scale_bits : {uint16_t{0x7e00}, uint16_t{0x7c00}, uint16_t{0xfc00}}) {
    testing::TempDir dir;
    std::vector<uint8_t> blocks(2 * 34, 1);
    std::memcpy(blocks.data(), &scale_bits, 2);  // Block 0: bad; block 1: scale 0x0101.
    GgufWriter writer;
    writer.SetString("general.architecture", "llama");
    writer.AddTensor("blk.0.ffn_down.weight", QuantType::kQ8_0, {1, 64}, Bytes(blocks));
    const std::string path = dir.Join("m.gguf");
    ASSERT_OK(writer.Write(path));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    const absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
        Checkpoint::FromGguf(std::move(file), ModelConfig{});
    ASSERT_FALSE(checkpoint.ok());
    EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(checkpoint.status().message());
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("tensor 'blk.0.ffn_down.weight'"), std::string::npos) << message;
    EXPECT_NE(message.find("block 0"), std::string::npos) << message;
  }
}

TEST(GgufTest, QuantizedTensorsAreServedAsTheirBlocks) {
  testing::TempDir dir;
  // Q8_0, one block: scale 0.5 (f16 0x3800), quants -64..63 step 4 -> weights -32..31.5 by 2.
  std::vector<uint8_t> block(34);
  const uint16_t half = 0x3800;
  std::memcpy(block.data(), &half, 2);
  for (int i = 0; i < 32; ++i) block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(4 * i - 64));
  GgufWriter writer;
  writer.SetString("general.architecture", "llama");
  writer.AddTensor("blk.0.ffn_down.weight", QuantType::kQ8_0, {1, 32}, Bytes(block));
  const std::string path = dir.Join("m.gguf");
  ASSERT_OK(writer.Write(path));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  ASSERT_OK_AND_ASSIGN(const std::unique_ptr<Checkpoint> checkpoint,
                       Checkpoint::FromGguf(std::move(file), ModelConfig{}));
  const Checkpoint::Entry entry = checkpoint->Find("model.layers.0.mlp.down_proj.weight");
  ASSERT_NE(entry.tensor, nullptr);
  // The blocks themselves, from the mapping: no dequantized copy.
  EXPECT_EQ(entry.tensor->dtype, DType::kQ8_0);
  EXPECT_EQ(entry.tensor->shape, (std::vector<int64_t>{1, 32}));
  ASSERT_EQ(entry.tensor->num_bytes, block.size());
  EXPECT_EQ(std::memcmp(entry.tensor->data, block.data(), block.size()), 0);
  // The reference Gemm reads them as the format defines: a = e_i picks weight i.
  TensorView w(const_cast<uint8_t*>(entry.tensor->data), DType::kQ8_0, {1, 32});
  CpuBackend backend;
  for (int i = 0; i < 32; ++i) {
    std::vector<float> a(32, 0.0f);
    a[i] = 1.0f;
    float out = NAN;
    backend.Gemm(TensorView(a.data(), DType::kF32, {1, 32}), w, TensorView(),
                 TensorView(&out, DType::kF32, {1, 1}));
    EXPECT_EQ(out, 0.5f * static_cast<float>(4 * i - 64)) << i;
  }
}

TEST(GgufTest, RandomMutationsNeverCrash) {
  testing::TempDir dir;
  const std::vector<uint8_t> a = Iota(64), b = Iota(6);
  GgufWriter writer;
  writer.SetString("general.architecture", "llama");
  writer.SetStringArray("tokenizer.ggml.tokens", {"a", "bb", "ccc"});
  writer.SetF32Array("tokenizer.ggml.scores", {1, 2, 3});
  writer.AddTensor("a", GgmlType::kF32, {4, 4}, Bytes(a));
  writer.AddTensor("b", GgmlType::kBF16, {3}, Bytes(b));
  ASSERT_OK(writer.Write(dir.Join("m.gguf")));
  const std::string valid = ReadFile(dir.Join("m.gguf"));
  ASSERT_OK(Parse(valid).status());
  std::mt19937 random(1234);
  int rejected = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = random() % bytes.size();
      bytes[at] = static_cast<char>(random() % 3 == 0 ? 0xff : random());
    }
    if (random() % 8 == 0) bytes.resize(random() % bytes.size());
    // Copied to the heap at its exact size, so a read past the end is caught by ASan.
    std::vector<uint8_t> heap(bytes.begin(), bytes.end());
    rejected += ParseGguf(heap.data(), heap.size(), "m.gguf").ok() ? 0 : 1;
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace iquest
