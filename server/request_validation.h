// Parse at the edge: a proto GenerateRequest becomes a validated, tokenized GenerationRequest,
// or INVALID_ARGUMENT naming the field and its allowed range. Only each field's own range is
// checked here; whether the prompt can ever run (non-empty, ids in the vocabulary, prompt +
// max_tokens in the context, the KV pool) is scheduler/check_fits.h's, called by Engine::Submit.
// Float fields are checked with
// `!(lo <= x && x <= hi)`, which rejects NaN as well.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "iquest/serve/v1/generation.pb.h"
#include "server/serving_context.h"
#include "server/tools/tool_calling.h"

namespace iquest {

inline constexpr int kMaxRequestIdBytes = 128;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;
inline constexpr int kMaxLogitBias = 1024;
inline constexpr int kMaxLogprobs = 20;
inline constexpr int kMaxN = 8;
inline constexpr int kMaxPriority = 1000;
inline constexpr int kMaxTenantBytes = 64;
inline constexpr int kMaxCacheSaltBytes = 256;
inline constexpr int kMaxChatMessages = 1024;
// A per-request Jinja chat template (parsed for that request alone).
inline constexpr size_t kMaxChatTemplateBytes = 64 << 10;
inline constexpr size_t kMaxToolsBytes = 1 << 20;  // chat.tools' JSON.
// Structured output: json_schema / regex / grammar text, and the choice list.
inline constexpr size_t kMaxConstraintBytes = 256 << 10;
inline constexpr int kMaxChoices = 1024;
inline constexpr size_t kMaxChoiceBytes = 4096;

// `tool_calling`, when given, receives what a chat request's tool_choice asks (kNone for other
// inputs): the front doors run its extractor over the outputs; the constraint of "required" and
// a named function is already applied to the sampling params.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const serve::v1::GenerateRequest& proto,
                                                      const ServingContext& context,
                                                      ToolCalling* tool_calling = nullptr);

absl::StatusOr<SamplingParams> ToSamplingParams(const serve::v1::SamplingParams& proto,
                                                const ServingContext& context);

// Token ids in [0, vocab_size), at most max_model_len of them (Detokenize's input).
absl::Status CheckTokenIds(const google::protobuf::RepeatedField<int32_t>& ids,
                           const ServingContext& context, const char* field);

// Renders chat messages with the model's (or the requested) template; EncodeChat gives the ids.
absl::StatusOr<RenderedChat> RenderChat(const serve::v1::ChatInput& chat,
                                        const ServingContext& context);

}  // namespace iquest
