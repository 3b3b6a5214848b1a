// Flag values -> GenerateRequest for iquest-cli.
#include "tools/cli/request_builder.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace iquest {
namespace {

using iquest::serve::v1::ChatMessage;
using iquest::serve::v1::GenerateRequest;
using iquest::serve::v1::SamplingParams;

// Only what the flags set goes into the request: the server owns the defaults and ranges, and
// its INVALID_ARGUMENT names the field, so the client does not duplicate the checks.
void FillSampling(const GenerateOptions& options, SamplingParams& sampling) {
  if (options.max_tokens >= 0) sampling.set_max_tokens(static_cast<int32_t>(options.max_tokens));
  if (options.temperature >= 0) sampling.set_temperature(static_cast<float>(options.temperature));
  if (options.top_p >= 0) sampling.set_top_p(static_cast<float>(options.top_p));
  if (options.top_k >= -1) sampling.set_top_k(static_cast<int32_t>(options.top_k));
  if (options.seed >= 0) sampling.set_seed(static_cast<uint64_t>(options.seed));
  if (options.n >= 0) sampling.set_n(static_cast<int32_t>(options.n));
  for (const std::string& stop : options.stop) sampling.add_stop(stop);
  sampling.set_ignore_eos(options.ignore_eos);
}

GenerateRequest BaseRequest(const GenerateOptions& options) {
  GenerateRequest request;
  request.set_request_id(options.request_id);
  request.set_priority(static_cast<int32_t>(options.priority));
  request.set_tenant(options.tenant);
  FillSampling(options, *request.mutable_sampling());
  return request;
}

}  // namespace

void AddSamplingFlags(FlagParser& parser, GenerateOptions* options) {
  parser.AddInt("max-tokens", &options->max_tokens, "tokens to generate; -1: server default", -1,
                std::numeric_limits<int32_t>::max());
  parser.AddDouble("temperature", &options->temperature, "0: greedy; -1: server default", -1, 1e9);
  parser.AddDouble("top-p", &options->top_p, "nucleus mass; -1: server default", -1, 1e9);
  parser.AddInt("top-k", &options->top_k, "0 or -1 disables; -2: server default", -2,
                std::numeric_limits<int32_t>::max());
  parser.AddInt("seed", &options->seed, "sampling seed; -1: drawn by the server", -1,
                std::numeric_limits<int64_t>::max());
  parser.AddInt("n", &options->n, "samples; -1: server default", -1,
                std::numeric_limits<int32_t>::max());
  parser.AddString("stop", &options->help_only, "stop string; repeat the flag for several");
  parser.AddInt("priority", &options->priority, "lower runs first", -1000000, 1000000);
  parser.AddString("tenant", &options->tenant, "fairness key");
  parser.AddString("request-id", &options->request_id, "id for Abort; default: server's");
  parser.AddBool("ignore-eos", &options->ignore_eos, "keep generating past EOS");
}

absl::StatusOr<GenerateRequest> BuildGenerateRequest(const GenerateOptions& options) {
  if (options.prompt.empty() == options.prompt_ids.empty()) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --prompt-ids");
  }
  GenerateRequest request = BaseRequest(options);
  if (!options.prompt.empty()) {
    request.set_text(options.prompt);
  } else {
    std::vector<int32_t> ids;
    const absl::Status parsed =
        ParseIntList(options.prompt_ids, 0, std::numeric_limits<int32_t>::max(), &ids);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: ", parsed.message()));
    }
    request.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  }
  return request;
}

absl::StatusOr<GenerateRequest> BuildChatRequest(const GenerateOptions& options) {
  if (options.messages.empty()) return absl::InvalidArgumentError("chat needs --message");
  GenerateRequest request = BaseRequest(options);
  auto* chat = request.mutable_chat();
  if (!options.system.empty()) {
    ChatMessage* system = chat->add_messages();
    system->set_role("system");
    system->set_content(options.system);
  }
  for (const std::string& text : options.messages) {
    ASSIGN_OR_RETURN(*chat->add_messages(), ParseChatMessage(text));
  }
  return request;
}

absl::StatusOr<ChatMessage> ParseChatMessage(const std::string& text) {
  const size_t colon = text.find(':');
  const std::string role = text.substr(0, colon);
  if (colon == std::string::npos || (role != "system" && role != "user" && role != "assistant")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--message: expected ROLE:TEXT with ROLE system, user or assistant, got '", text, "'"));
  }
  ChatMessage message;
  message.set_role(role);
  message.set_content(text.substr(colon + 1));
  return message;
}

std::vector<std::string> TakeRepeatedFlag(const std::string& name, std::vector<std::string>& args) {
  const std::string flag = "--" + name;
  const std::string prefix = flag + "=";
  std::vector<std::string> values;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag && i + 1 < args.size()) {
      values.push_back(args[++i]);
    } else if (args[i].rfind(prefix, 0) == 0) {
      values.push_back(args[i].substr(prefix.size()));
    } else {
      rest.push_back(args[i]);
    }
  }
  args = std::move(rest);
  return values;
}

}  // namespace iquest
