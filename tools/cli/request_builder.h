// Turns iquest-cli's generate/chat flags into a GenerateRequest. Kept apart from the RPC code so
// that the mapping of every flag onto the proto is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "iquest/serve/v1/generation.pb.h"

namespace iquest {

// Flag values as parsed. Numeric sampling flags use a sentinel (below their range) for "unset",
// so that an unset flag leaves the proto field unset and the server applies its default.
struct GenerateOptions {
  std::string prompt;
  std::string prompt_ids;
  std::vector<std::string> messages;  // "role:content", in order.
  std::string system;
  int64_t max_tokens = -1;
  double temperature = -1;
  double top_p = -1;
  int64_t top_k = -2;
  int64_t seed = -1;
  int64_t n = -1;
  std::vector<std::string> stop;
  int64_t priority = 0;
  std::string tenant;
  std::string request_id;
  bool ignore_eos = false;
  // --stop and --message repeat, so TakeRepeatedFlag takes them out of argv before FlagParser
  // runs; they are registered with this target only so that --help lists them.
  std::string help_only;
};

// Registers the sampling and request flags (not the input flags, which differ per command).
void AddSamplingFlags(FlagParser& parser, GenerateOptions* options);

// `generate`: exactly one of --prompt and --prompt-ids.
absl::StatusOr<iquest::serve::v1::GenerateRequest> BuildGenerateRequest(
    const GenerateOptions& options);

// `chat`: --system (optional) then each --message "role:content".
absl::StatusOr<iquest::serve::v1::GenerateRequest> BuildChatRequest(const GenerateOptions& options);

// Splits "role:content" at the first colon; the role must be system, user or assistant.
absl::StatusOr<iquest::serve::v1::ChatMessage> ParseChatMessage(const std::string& text);

// Removes every `--name VALUE` / `--name=VALUE` from argv (FlagParser keeps only the last value
// of a flag) and returns the values in order. Lets --stop and --message repeat.
std::vector<std::string> TakeRepeatedFlag(const std::string& name, std::vector<std::string>& args);

}  // namespace iquest
