#include "scheduler/kv_blocks.h"

#include <algorithm>

#include "common/check.h"
#include "common/status.h"

namespace iquest {
namespace {

// Blocks `manager` must hand out for Grow: new ones plus a copy-on-write copy.
int64_t BlocksToGrow(const BlockManager& manager, const Request& request, int64_t num_total_tokens,
                     const BlockManager::CachedPrefix* prefix) {
  const bool copy = manager.NeedsCopy(request, request.num_computed_tokens);
  return manager.NumBlocksToAllocate(request, num_total_tokens, prefix) + (copy ? 1 : 0);
}

void GrowOne(BlockManager& manager, Request& request, int64_t num_total_tokens,
             const BlockManager::CachedPrefix* prefix, std::vector<BlockCopy>& copies) {
  if (manager.NeedsCopy(request, request.num_computed_tokens)) {
    copies.push_back(manager.CopyOnWrite(request, request.num_computed_tokens));
  }
  CHECK(manager.Allocate(request, num_total_tokens, prefix));
}

}  // namespace

KvBlocks::KvBlocks(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching,
                   int64_t local_window, int64_t num_local_blocks)
    : global_(num_blocks, block_size, enable_prefix_caching), local_window_(local_window) {
  if (local_window > 0) {
    local_ = std::make_unique<BlockManager>(num_local_blocks, block_size, enable_prefix_caching,
                                            &Request::local_block_ids);
  }
}

KvBlocks::Prefix KvBlocks::FindCachedPrefix(Request& request) {
  Prefix prefix;
  prefix.global = global_.FindCachedPrefix(request);
  if (local_ == nullptr) {
    prefix.num_tokens = prefix.global.num_tokens;
    return prefix;
  }
  // The longest global hit whose last window the local pool still holds.
  const int64_t block_size = global_.block_size();
  for (int64_t m = static_cast<int64_t>(prefix.global.block_ids.size()); m > 0; --m) {
    std::optional<BlockManager::CachedPrefix> local =
        local_->FindCachedWindow(request, m * block_size, local_window_);
    if (!local) continue;
    prefix.global.block_ids.resize(static_cast<size_t>(m));
    prefix.global.num_tokens = m * block_size;
    prefix.local = std::move(*local);
    prefix.num_tokens = m * block_size;
    return prefix;
  }
  return Prefix();
}

bool KvBlocks::Fits(const Request& request, int64_t num_total_tokens, const Prefix* prefix) const {
  if (BlocksToGrow(global_, request, num_total_tokens, prefix ? &prefix->global : nullptr) >
      global_.num_free_blocks()) {
    return false;
  }
  return local_ == nullptr ||
         BlocksToGrow(*local_, request, num_total_tokens, prefix ? &prefix->local : nullptr) <=
             local_->num_free_blocks();
}

void KvBlocks::Grow(Request& request, int64_t num_total_tokens, const Prefix* prefix,
                    std::vector<BlockCopy>& copies, std::vector<BlockCopy>& local_copies) {
  CHECK(Fits(request, num_total_tokens, prefix));
  GrowOne(global_, request, num_total_tokens, prefix ? &prefix->global : nullptr, copies);
  if (local_ != nullptr) {
    GrowOne(*local_, request, num_total_tokens, prefix ? &prefix->local : nullptr, local_copies);
    max_local_used_ = std::max(max_local_used_, local_->num_used_blocks());
  }
}

int64_t KvBlocks::SlotsPast(const Request& request, int64_t num_tokens) const {
  auto slots = [&](const BlockManager& manager, const std::vector<int32_t>& table) {
    return (static_cast<int64_t>(table.size()) + manager.num_free_blocks()) * manager.block_size() -
           num_tokens;
  };
  int64_t out = slots(global_, request.block_ids);
  if (local_ != nullptr) out = std::min(out, slots(*local_, request.local_block_ids));
  return out;
}

void KvBlocks::AfterStep(Request& request) {
  global_.CacheFullBlocks(request);
  if (local_ == nullptr) return;
  local_->CacheFullBlocks(request);
  // The next query sits at num_computed_tokens; its window starts local_window_ - 1 before.
  local_->ReleaseBefore(request, request.num_computed_tokens - local_window_ + 1);
}

void KvBlocks::Free(Request& request) {
  global_.Free(request);
  if (local_ != nullptr) local_->Free(request);
}

void KvBlocks::Truncate(Request& request, int64_t num_tokens) {
  global_.Truncate(request, num_tokens);
  if (local_ != nullptr) local_->Truncate(request, num_tokens);
}

void KvBlocks::Fork(const Request& parent, Request& child) {
  global_.Fork(parent, child);
  if (local_ != nullptr) local_->Fork(parent, child);
}

absl::Status KvBlocks::ResetPrefixCache() {
  RETURN_IF_ERROR(global_.ResetPrefixCache());
  return local_ == nullptr ? absl::OkStatus() : local_->ResetPrefixCache();
}

absl::Status KvBlocks::CheckInvariants(const std::vector<const Request*>& live) const {
  RETURN_IF_ERROR(global_.CheckInvariants(live));
  return local_ == nullptr ? absl::OkStatus() : local_->CheckInvariants(live);
}

}  // namespace iquest
