// ServerConfig::Validate fails fast (before the model loads) on a bad --tenant-weights file, and
// LoadTenantWeights names the flag and the line.
#include "server/server_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/iquest-tenant-weights-XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(ServerConfigTest, TenantWeightsFileIsParsedAtValidation) {
  ServerConfig config;
  config.model_dir = "/tmp";
  EXPECT_OK(config.Validate());
  config.tenant_weights_file = WriteTemp("team-a 3\nteam-b x\n");
  const absl::Status bad = config.Validate();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("--tenant-weights"), std::string::npos) << bad;
  EXPECT_NE(bad.message().find("line 2"), std::string::npos) << bad;
  std::remove(config.tenant_weights_file.c_str());

  config.tenant_weights_file = WriteTemp("team-a 3\n");
  EXPECT_OK(config.Validate());
  ASSERT_OK_AND_ASSIGN(const TenantWeights weights, LoadTenantWeights(config.tenant_weights_file));
  EXPECT_EQ(weights, (TenantWeights{{"team-a", 3.0}}));
  std::remove(config.tenant_weights_file.c_str());

  config.tenant_weights_file = "/nonexistent/weights";
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iquest
