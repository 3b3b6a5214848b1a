#include "scheduler/request.h"

#include <algorithm>

namespace iquest {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStopToken:
      return "stop_token";
    case FinishReason::kStopString:
      return "stop_string";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kDeadlineExceeded:
      return "deadline_exceeded";
    case FinishReason::kInternalError:
      return "internal_error";
  }
  return "unknown";
}

std::string LiveKey(std::string_view owner, std::string_view request_id) {
  std::string key = std::to_string(owner.size());
  key.push_back(':');
  key.append(owner);
  key.append(request_id);
  return key;
}

bool MaySpeculate(const Request& r) {
  return r.state == RequestState::kRunning && r.num_tokens() - r.num_computed_tokens == 1 &&
         r.sampling.n == 1 && r.sampling.speculation && r.sampling.grammar == nullptr;
}

FinishReason AppendToken(Request& request, int32_t token, int64_t max_model_len) {
  request.token_ids.push_back(token);
  const SamplingParams& params = request.sampling;
  const bool past_min_tokens = request.num_output_tokens() >= params.min_tokens;
  auto contains = [token](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), token) != ids.end();
  };
  if (past_min_tokens) {
    if (!params.ignore_eos && contains(request.eos_token_ids)) return FinishReason::kStopToken;
    if (contains(params.stop_token_ids)) return FinishReason::kStopToken;
  }
  if (request.num_output_tokens() >= params.max_tokens) return FinishReason::kLength;
  if (request.num_tokens() >= max_model_len) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace iquest
