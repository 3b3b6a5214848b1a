// Request: one generation as the scheduler sees it — its tokens, how many of them have K/V in
// the cache, its block table, and the policy fields (priority, tenant, deadline).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/sha256.h"

namespace iquest {

using Clock = std::chrono::steady_clock;

class GrammarMatcher;  // structured/grammar_matcher.h; the scheduler only carries the pointer.

// Validated sampling parameters (the server checks ranges before a request exists).
struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy.
  int32_t top_k = 0;                // 0: disabled.
  float top_p = 1.0f;               // 1: disabled.
  float min_p = 0.0f;               // 0: disabled.
  float repetition_penalty = 1.0f;  // 1: disabled; applies to prompt and output tokens.
  float presence_penalty = 0.0f;    // Output tokens only.
  float frequency_penalty = 0.0f;   // Output tokens only.
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::optional<uint64_t> seed;  // Unset: the engine draws one.
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;  // EOS and stop tokens are masked until this many are generated.
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;
  int32_t logprobs = 0;             // Top-k logprobs per sampled token; 0: only the sampled one.
  int32_t prompt_logprobs = 0;      // Top-k logprobs per prompt token; 0: none.
  int32_t n = 1;                    // Independent samples sharing the prompt's KV blocks.
  bool skip_special_tokens = true;  // For the streamed text.
  // Structured output: the output must stay in this grammar's language (null: unconstrained).
  // Shared by every request with the same constraint; each sample keeps its own state in the
  // engine (engine/constrained_decoding.h).
  std::shared_ptr<GrammarMatcher> grammar = nullptr;
  // Speculative decoding (engine/speculation/speculator.h) for this request when the server runs a
  // proposer; false: it decodes one token per step. Outputs are the same either way.
  bool speculation = true;
};

// Lifecycle order is meaningful: a request only moves forward, except that preemption sends a
// running request back to kWaiting.
enum class RequestState { kWaiting, kRunning, kFinished };

enum class FinishReason {
  kNone,
  kStopToken,   // EOS or a stop token id.
  kStopString,  // A stop string appeared in the text.
  kLength,      // max_tokens or the model's context.
  kCancelled,   // Client cancel, Abort, or shutdown.
  kDeadlineExceeded,
  kInternalError,  // The step failed (a backend error); only the step's requests are affected.
};

const char* FinishReasonName(FinishReason reason);

// The key of a live request: (owner, request_id), length-prefixed so no two pairs share one.
std::string LiveKey(std::string_view owner, std::string_view request_id);

struct Request {
  uint64_t id = 0;         // Engine-assigned, unique.
  std::string request_id;  // The client's name for it, unique among its owner's live requests.
  // Who submitted it (the server's caller identity): request_ids are scoped to it, so one caller
  // can neither cancel nor probe another's requests.
  std::string owner;
  std::string live_key;      // LiveKey(owner, request_id), set once at submission.
  int32_t sample_index = 0;  // Which of the n samples of request_id this is.
  // The prompt, then the output tokens, in one vector: a step's chunk is a span of it. The
  // first `prompt_len` entries are the prompt, fixed once the request is submitted.
  std::vector<int32_t> token_ids;
  int64_t prompt_len = 0;
  SamplingParams sampling;
  int32_t priority = 0;  // Lower values are scheduled first (as in vLLM).
  std::string tenant;
  std::string cache_salt;  // Isolates prefix-cache entries (e.g. per tenant).
  Clock::time_point arrival_time{};
  std::optional<Clock::time_point> deadline;
  std::vector<int32_t> eos_token_ids;  // Stops generation unless ignore_eos.

  RequestState state = RequestState::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  int64_t num_computed_tokens = 0;  // Tokens whose K/V are in the cache.
  int64_t num_cached_tokens = 0;    // Of the prompt, served by the prefix cache at admission.
  std::vector<int32_t> block_ids;   // Block table: logical block i -> physical block.
  // Loop models: the table of the local (windowed) KV layers' pool; entries wholly before the
  // window are kNoBlock (block_manager.h). Empty for every other model.
  std::vector<int32_t> local_block_ids;
  // Prefix-cache keys of the request's full blocks, computed once as blocks fill.
  std::vector<Sha256Digest> block_hashes;
  int32_t num_preemptions = 0;
  int64_t admitted_step = 0;  // The scheduler step of its latest admission.
  // Set when the request is created by a fork (n > 1): its siblings share the prompt's blocks.
  bool forked = false;
  // Speculative decoding: tokens a proposer guesses follow token_ids, for the next step to
  // verify after the last real token. Only a decoding request (num_computed_tokens ==
  // num_tokens() - 1) has them; they are never part of token_ids until the target model's own
  // samples agree (Scheduler::Update).
  std::vector<int32_t> draft_token_ids;

  int64_t num_prompt_tokens() const { return prompt_len; }
  int64_t num_output_tokens() const { return num_tokens() - prompt_len; }
  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int32_t token(int64_t i) const { return token_ids[static_cast<size_t>(i)]; }
  std::span<const int32_t> prompt_token_ids() const {
    return std::span<const int32_t>(token_ids).first(static_cast<size_t>(prompt_len));
  }
  std::span<const int32_t> output_token_ids() const {
    return std::span<const int32_t>(token_ids).subspan(static_cast<size_t>(prompt_len));
  }
  // Replaces the tokens with `prompt` (before the request is submitted).
  void SetPrompt(std::vector<int32_t> prompt) {
    token_ids = std::move(prompt);
    prompt_len = num_tokens();
  }
  bool is_finished() const { return state == RequestState::kFinished; }
};

// Whether `request` may verify speculative drafts in its next step: running with one token left
// to compute (its last one), a single sample (a prompt that forks into n samples does not), its
// speculation switch on and no grammar (whose masks are computed per token, ahead of the step).
bool MaySpeculate(const Request& request);

// Appends `token` and returns why the request must stop now, or kNone. Covers EOS and stop token
// ids (respecting min_tokens and ignore_eos), max_tokens and `max_model_len`. Stop strings need
// the text and are checked by the engine.
FinishReason AppendToken(Request& request, int32_t token, int64_t max_model_len);

}  // namespace iquest
