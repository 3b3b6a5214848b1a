// manifest.json: a folder whose config, weights or tokenizer no longer match the digests written
// beside them is refused at load, naming the file; an explicit override serves it anyway.
#include "model/manifest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/mapped_file.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_model.h"

namespace iquest {
namespace {

using ::iquest::testing::TempDir;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(WriteTinyModel(dir_.path(), TinyModelOptions{}));
    WriteFile(dir_.Join("tokenizer.model"), "a tokenizer's bytes");
    WriteFile(dir_.Join("tokenizer_config.json"), "{\"add_bos_token\": true}");
    WriteFile(dir_.Join("generation_config.json"), "{}");  // Not covered: sampling defaults.
    ASSERT_OK_AND_ASSIGN(ModelManifest manifest, ComputeManifest(dir_.path()));
    WriteFile(dir_.Join(kManifestFileName), ManifestToJson(manifest));
    fingerprint_ = manifest.fingerprint;
  }

  std::string ErrorOf(const absl::Status& status) { return std::string(status.message()); }

  TempDir dir_;
  std::string fingerprint_;
};

TEST_F(ManifestTest, CoversConfigWeightsAndTokenizerFiles) {
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, ManifestedFiles(dir_.path()));
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.model",
                                             "tokenizer_config.json"}));
}

TEST_F(ManifestTest, CoversAGgufFileInTheFolder) {
  WriteFile(dir_.Join("model.gguf"), "GGUF weights");
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, ManifestedFiles(dir_.path()));
  EXPECT_NE(std::find(names.begin(), names.end(), "model.gguf"), names.end());
  EXPECT_STATUS_CODE(VerifyManifest(dir_.path()).status(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ManifestTest, AnIntactFolderVerifies) {
  ASSERT_OK_AND_ASSIGN(const ModelManifest manifest, VerifyManifest(dir_.path()));
  EXPECT_EQ(manifest.fingerprint, fingerprint_);
  EXPECT_EQ(manifest.fingerprint.size(), 16u);
  ASSERT_OK_AND_ASSIGN(const ManifestCheck check, CheckModelManifest(dir_.path(), false));
  EXPECT_TRUE(check.verified);
  EXPECT_EQ(check.fingerprint, fingerprint_);
}

TEST_F(ManifestTest, ACorruptedWeightFileIsRefusedByName) {
  std::string weights;
  { ASSERT_OK_AND_ASSIGN(weights, ReadFileToString(dir_.Join("model.safetensors"))); }
  weights[weights.size() - 3] ^= 0x40;  // One bit of the last tensor's data.
  WriteFile(dir_.Join("model.safetensors"), weights);
  const absl::StatusOr<ManifestCheck> check = CheckModelManifest(dir_.path(), false);
  EXPECT_STATUS_CODE(check.status(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ErrorOf(check.status()).find("model.safetensors: sha256"), std::string::npos)
      << check.status();
  EXPECT_NE(ErrorOf(check.status()).find("--allow-manifest-mismatch"), std::string::npos);
}

TEST_F(ManifestTest, ATokenizerFromAnotherModelIsRefusedByName) {
  WriteFile(dir_.Join("tokenizer.model"), "another model's tokenizer");
  const absl::StatusOr<ModelManifest> verified = VerifyManifest(dir_.path());
  EXPECT_STATUS_CODE(verified.status(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ErrorOf(verified.status()).find("tokenizer.model: sha256"), std::string::npos)
      << verified.status();
}

TEST_F(ManifestTest, AnUnlistedTokenizerFileIsRefused) {
  // tokenizer.json would take precedence over the verified tokenizer.model.
  WriteFile(dir_.Join("tokenizer.json"), "{}");
  const absl::StatusOr<ModelManifest> verified = VerifyManifest(dir_.path());
  EXPECT_STATUS_CODE(verified.status(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ErrorOf(verified.status()).find("tokenizer.json: not listed"), std::string::npos);
}

TEST_F(ManifestTest, AMissingListedFileIsRefused) {
  std::filesystem::remove(dir_.Join("tokenizer_config.json"));
  const absl::StatusOr<ModelManifest> verified = VerifyManifest(dir_.path());
  EXPECT_STATUS_CODE(verified.status(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ErrorOf(verified.status()).find("tokenizer_config.json: listed"), std::string::npos);
}

TEST_F(ManifestTest, TheOverrideServesAMismatchWithTheActualFingerprint) {
  WriteFile(dir_.Join("tokenizer.model"), "another model's tokenizer");
  ASSERT_OK_AND_ASSIGN(const ManifestCheck check, CheckModelManifest(dir_.path(), true));
  EXPECT_FALSE(check.verified);
  EXPECT_EQ(check.fingerprint.size(), 16u);
  EXPECT_NE(check.fingerprint, fingerprint_);
}

TEST_F(ManifestTest, NoManifestIsAWarningNotAnError) {
  std::filesystem::remove(dir_.Join(kManifestFileName));
  EXPECT_STATUS_CODE(VerifyManifest(dir_.path()).status(), absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(const ManifestCheck check, CheckModelManifest(dir_.path(), false));
  EXPECT_FALSE(check.verified);
  EXPECT_EQ(check.fingerprint, "");
}

TEST_F(ManifestTest, AMalformedManifestIsAnError) {
  WriteFile(dir_.Join(kManifestFileName), "{\"format\": 1, \"files\": []}");
  EXPECT_FALSE(CheckModelManifest(dir_.path(), false).ok());
  ASSERT_OK_AND_ASSIGN(const ModelManifest manifest, ComputeManifest(dir_.path()));
  std::string text = ManifestToJson(manifest);
  text.replace(text.find(manifest.fingerprint), 16, "0123456789abcdef");
  const absl::StatusOr<ModelManifest> parsed = ParseManifest(text, "manifest.json");
  EXPECT_STATUS_CODE(parsed.status(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ErrorOf(parsed.status()).find("'fingerprint'"), std::string::npos) << parsed.status();
}

TEST_F(ManifestTest, TheFingerprintDependsOnEveryDigest) {
  ASSERT_OK_AND_ASSIGN(ModelManifest manifest, ComputeManifest(dir_.path()));
  const std::string before = FingerprintOf(manifest.files);
  manifest.files.back().sha256[0] = manifest.files.back().sha256[0] == 'a' ? 'b' : 'a';
  EXPECT_NE(FingerprintOf(manifest.files), before);
}

}  // namespace
}  // namespace iquest
