// libFuzzer: the OpenAI request bodies of the HTTP front door on arbitrary bytes, through
// ParseOpenAiRequest for both endpoints and ErrorParam on whatever error comes out. The first
// byte picks the endpoint; an accepted body must give one prompt (chat) or up to its count.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/check.h"
#include "server/http/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const iquest::OpenAiEndpoint endpoint = (data[0] & 1) != 0
                                              ? iquest::OpenAiEndpoint::kChatCompletions
                                              : iquest::OpenAiEndpoint::kCompletions;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto parsed = iquest::ParseOpenAiRequest(endpoint, absl::string_view(body.data(), body.size()));
  if (!parsed.ok()) {
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument) << parsed.status();
    (void)iquest::ErrorParam(parsed.status());
    return 0;
  }
  CHECK(!parsed->prompts.empty());
  if (endpoint == iquest::OpenAiEndpoint::kChatCompletions) CHECK_EQ(parsed->prompts.size(), 1u);
  CHECK_GE(parsed->n, INT32_MIN);
  return 0;
}
