#include "engine/speculation/draft_proposer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"
#include "model/batch_inputs.h"

namespace iquest {

absl::StatusOr<std::unique_ptr<DraftProposer>> DraftProposer::Create(
    const LlamaModel& target, LlamaModel& draft, const KvCacheConfig& kv,
    const SchedulerConfig& scheduler) {
  const ModelConfig& t = target.config();
  const ModelConfig& d = draft.config();
  if (d.vocab_size != t.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("draft model vocabulary has ", d.vocab_size,
                                                   " tokens, the target's ", t.vocab_size,
                                                   ": speculation needs the same tokenizer"));
  }
  if (d.eos_token_ids != t.eos_token_ids) {
    return absl::InvalidArgumentError(
        "draft model's EOS token ids differ from the target's: speculation needs the same "
        "tokenizer");
  }
  if (d.max_context_len < scheduler.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("draft model context ", d.max_context_len,
                                                   " is shorter than max_model_len ",
                                                   scheduler.max_model_len));
  }
  if (kv.num_blocks < 1) return absl::InvalidArgumentError("draft KV cache has no blocks");
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(draft.backend(), d, kv));
  return std::unique_ptr<DraftProposer>(
      new DraftProposer(draft, std::move(cache), kv, scheduler.enable_prefix_caching));
}

DraftProposer::DraftProposer(LlamaModel& draft, std::unique_ptr<KvCache> cache,
                             const KvCacheConfig& kv, bool enable_prefix_caching)
    : draft_(draft),
      cache_(std::move(cache)),
      blocks_(kv.num_blocks, kv.block_size, enable_prefix_caching),
      block_size_(kv.block_size) {}

void DraftProposer::Forget(uint64_t id) {
  auto it = shadows_.find(id);
  if (it == shadows_.end()) return;
  blocks_.Free(*it->second);
  shadows_.erase(it);
}

bool DraftProposer::Prepare(const Request& target, int64_t num_total_tokens,
                            const std::unordered_map<uint64_t, bool>& active) {
  std::unique_ptr<Request>& slot = shadows_[target.id];
  if (slot == nullptr) {
    slot = std::make_unique<Request>();
    slot->id = target.id;
    slot->cache_salt = target.cache_salt;
  }
  Request& shadow = *slot;
  // The draft K/V stays valid up to the first token where the shadow and the target differ.
  const size_t common =
      static_cast<size_t>(std::mismatch(shadow.token_ids.begin(), shadow.token_ids.end(),
                                        target.token_ids.begin(), target.token_ids.end())
                              .first -
                          shadow.token_ids.begin());
  shadow.token_ids.resize(common);
  shadow.token_ids.insert(shadow.token_ids.end(), target.token_ids.begin() + common,
                          target.token_ids.end());
  shadow.prompt_len = target.prompt_len;
  // The last token is always fed again: its logits give the first draft.
  shadow.num_computed_tokens = std::min<int64_t>(
      {shadow.num_computed_tokens, static_cast<int64_t>(common), target.num_tokens() - 1});
  // Only blocks of the target's own tokens were ever keyed, so the kept keys stay exact.
  blocks_.Truncate(shadow, shadow.num_computed_tokens);
  if (shadow.block_ids.empty()) {
    shadow.block_hashes.clear();
    shadow.num_computed_tokens = 0;
  }
  // Now, while its tokens are the target's: the blocks computed in earlier rounds get their
  // prefix-cache keys, and a block holding a draft never does.
  blocks_.CacheFullBlocks(shadow);
  // Too long for the whole pool: give up without evicting anyone.
  if ((num_total_tokens + block_size_ - 1) / block_size_ > blocks_.num_blocks()) {
    Forget(target.id);
    return false;
  }
  while (true) {
    BlockManager::CachedPrefix prefix;
    if (shadow.block_ids.empty()) prefix = blocks_.FindCachedPrefix(shadow);
    if (blocks_.Allocate(shadow, num_total_tokens, &prefix)) {
      if (shadow.num_computed_tokens == 0) shadow.num_computed_tokens = prefix.num_tokens;
      return true;
    }
    // Evict a shadow this round does not use; it recomputes when its request drafts again.
    auto idle = std::find_if(shadows_.begin(), shadows_.end(), [&](const auto& entry) {
      return !active.contains(entry.first) && !entry.second->block_ids.empty();
    });
    if (idle == shadows_.end()) break;
    blocks_.Free(*idle->second);
    idle->second->num_computed_tokens = 0;
    idle->second->block_hashes.clear();
  }
  Forget(target.id);
  return false;
}

absl::StatusOr<std::vector<int32_t>> DraftProposer::Step(
    const std::vector<Request*>& shadows, const std::vector<std::vector<int32_t>>& chunks) {
  int64_t max_blocks = 1;
  for (size_t i = 0; i < shadows.size(); ++i) {
    const int64_t len = shadows[i]->num_computed_tokens + static_cast<int64_t>(chunks[i].size());
    max_blocks = std::max(max_blocks, (len + block_size_ - 1) / block_size_);
  }
  BatchBuilder builder(block_size_, max_blocks);
  rows_.clear();
  for (size_t i = 0; i < shadows.size(); ++i) {
    builder.AddSequence(chunks[i], shadows[i]->num_computed_tokens, shadows[i]->block_ids,
                        LogitsWanted::kLast);
    SampleRow row;
    row.logits_row = static_cast<int64_t>(i);
    row.temperature = 0.0f;  // Greedy.
    rows_.push_back(row);
  }
  ASSIGN_OR_RETURN(const TensorView logits, draft_.ForwardToDevice(builder.Build(), *cache_));
  ids_.resize(rows_.size());
  draft_.backend().SampleTokens(logits, rows_, ids_);
  draft_.backend().Synchronize();
  std::vector<int32_t> next(shadows.size());
  for (size_t i = 0; i < shadows.size(); ++i) {
    shadows[i]->num_computed_tokens += static_cast<int64_t>(chunks[i].size());
    next[i] = ids_[i].token;
  }
  return next;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> DraftProposer::Propose(
    std::span<const DraftQuery> queries) {
  std::vector<std::vector<int32_t>> drafts(queries.size());
  std::unordered_map<uint64_t, bool> active;
  for (const DraftQuery& q : queries) active[q.request->id] = true;
  // Round 0 catches each shadow up with its request's tokens; round j > 0 feeds draft j - 1.
  std::vector<size_t> live;  // Queries still drafting.
  std::vector<Request*> shadows;
  std::vector<std::vector<int32_t>> chunks;
  for (size_t i = 0; i < queries.size(); ++i) {
    const Request& target = *queries[i].request;
    // K/V for the target's tokens and the drafts fed back (all but the last).
    const int64_t total = target.num_tokens() + queries[i].max_drafts - 1;
    if (!Prepare(target, total, active)) continue;
    Request* shadow = shadows_.at(target.id).get();
    live.push_back(i);
    shadows.push_back(shadow);
    chunks.emplace_back(shadow->token_ids.begin() + shadow->num_computed_tokens,
                        shadow->token_ids.end());
  }
  while (!live.empty()) {
    absl::StatusOr<std::vector<int32_t>> next = Step(shadows, chunks);
    if (!next.ok()) {
      // The draft K/V of this round is unknown: every shadow recomputes.
      for (size_t i : live) Forget(queries[i].request->id);
      return next.status();
    }
    std::vector<size_t> still;
    std::vector<Request*> still_shadows;
    std::vector<std::vector<int32_t>> still_chunks;
    for (size_t n = 0; n < live.size(); ++n) {
      const size_t i = live[n];
      drafts[i].push_back((*next)[n]);
      if (static_cast<int64_t>(drafts[i].size()) == queries[i].max_drafts) continue;
      // Feed the draft back: the shadow's tokens run ahead of the target's until the sync.
      shadows[n]->token_ids.push_back((*next)[n]);
      still.push_back(i);
      still_shadows.push_back(shadows[n]);
      still_chunks.push_back({(*next)[n]});
    }
    live = std::move(still);
    shadows = std::move(still_shadows);
    chunks = std::move(still_chunks);
  }
  return drafts;
}

absl::Status DraftProposer::CheckInvariants() const {
  std::vector<const Request*> live;
  for (const auto& [id, shadow] : shadows_) live.push_back(shadow.get());
  return blocks_.CheckInvariants(live);
}

}  // namespace iquest
