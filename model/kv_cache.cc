#include "model/kv_cache.h"

#include <cstring>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"
#include "common/status.h"

namespace iquest {

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(Backend& backend, const ModelConfig& model,
                                                         const KvCacheConfig& config) {
  if (!(config.block_size >= 1 && config.block_size <= 1024)) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be in [1, 1024], got ", config.block_size));
  }
  // Slots are i32: num_blocks * block_size must stay below 2^31.
  const int64_t max_blocks = std::numeric_limits<int32_t>::max() / config.block_size;
  if (!(config.num_blocks >= 1 && config.num_blocks <= max_blocks)) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_blocks must be in [1, ", max_blocks, "], got ", config.num_blocks));
  }
  const bool local = model.is_loop() && model.loop_num > 1 && config.num_local_blocks > 0;
  if (config.num_local_blocks < 0 || config.num_local_blocks > max_blocks ||
      (config.num_local_blocks > 0 && !local)) {
    return absl::InvalidArgumentError(absl::StrCat("num_local_blocks must be 0, or in [1, ",
                                                   max_blocks,
                                                   "] for a Loop model with loop_num > 1"));
  }
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->config_ = config;
  cache->num_layers_ = model.num_kv_layers();
  cache->num_global_layers_ = local ? model.num_layers : model.num_kv_layers();
  cache->num_kv_heads_ = model.num_kv_heads;
  cache->head_dim_ = model.head_dim;
  // One layer's K (or V) pool of `num_blocks` blocks.
  auto pool = [&](int64_t num_blocks) {
    std::optional<uint64_t> bytes = CheckedMul(num_blocks, config.block_size);
    for (uint64_t factor : {static_cast<uint64_t>(model.num_kv_heads),
                            static_cast<uint64_t>(model.head_dim), DTypeSize(config.dtype)}) {
      if (bytes) bytes = CheckedMul(*bytes, factor);
    }
    return bytes;
  };
  const std::optional<uint64_t> global_pool = pool(config.num_blocks);
  const std::optional<uint64_t> local_pool = pool(config.num_local_blocks);
  const uint64_t num_local_layers =
      static_cast<uint64_t>(cache->num_layers_ - cache->num_global_layers_);
  std::optional<uint64_t> global_total, local_total, total;
  if (global_pool)
    global_total = CheckedMul(*global_pool, 2 * static_cast<uint64_t>(cache->num_global_layers_));
  if (local_pool) local_total = CheckedMul(*local_pool, 2 * num_local_layers);
  if (global_total && local_total && *global_total <= UINT64_MAX - *local_total) {
    total = *global_total + *local_total;
  }
  if (!total) return absl::InvalidArgumentError("KV cache size overflows");
  cache->pool_bytes_ = *global_pool;
  cache->local_pool_bytes_ = *local_pool;
  cache->backend_ = &backend;
  ASSIGN_OR_RETURN(cache->buffer_, backend.Allocate(*total));
  return cache;
}

PagedKvView KvCache::Layer(int64_t layer) const {
  CHECK(layer >= 0 && layer < num_layers_) << "layer " << layer;
  // The global layers, then the local ones.
  const bool global = layer < num_global_layers_;
  const size_t pool_bytes = global ? pool_bytes_ : local_pool_bytes_;
  char* base = static_cast<char*>(buffer_->data()) +
               (global ? 2 * layer * pool_bytes_
                       : 2 * num_global_layers_ * pool_bytes_ +
                             2 * (layer - num_global_layers_) * local_pool_bytes_);
  PagedKvView view;
  view.k = base;
  view.v = base + pool_bytes;
  view.dtype = config_.dtype;
  view.num_blocks = global ? config_.num_blocks : config_.num_local_blocks;
  view.block_size = config_.block_size;
  view.num_kv_heads = num_kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

absl::Status KvCache::CopyBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  return CopyIn(pairs, config_.num_blocks, 0, num_global_layers_);
}

absl::Status KvCache::CopyLocalBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  if (!has_local_pool() && !pairs.empty()) {
    return absl::InvalidArgumentError("local block copies without a local pool");
  }
  return CopyIn(pairs, config_.num_local_blocks, num_global_layers_, num_layers_);
}

absl::Status KvCache::CopyIn(const std::vector<std::pair<int32_t, int32_t>>& pairs,
                             int64_t num_blocks, int64_t first_layer, int64_t end_layer) {
  if (pairs.empty()) return absl::OkStatus();
  const int64_t n = static_cast<int64_t>(pairs.size());
  for (const auto& [src, dst] : pairs) {
    if (src < 0 || src >= num_blocks || dst < 0 || dst >= num_blocks || src == dst) {
      return absl::InvalidArgumentError(absl::StrCat("bad block copy ", src, " -> ", dst));
    }
  }
  if (n > copy_pairs_capacity_) {
    ASSIGN_OR_RETURN(copy_pairs_, backend_->Allocate(static_cast<size_t>(2 * n) * sizeof(int32_t)));
    copy_pairs_capacity_ = n;
  }
  std::vector<int32_t> flat;
  for (const auto& [src, dst] : pairs) {
    flat.push_back(src);
    flat.push_back(dst);
  }
  backend_->CopyToDevice(flat.data(), copy_pairs_->data(), flat.size() * sizeof(int32_t));
  const TensorView view(copy_pairs_->data(), DType::kI32, {n, 2});
  for (int64_t layer = first_layer; layer < end_layer; ++layer) {
    backend_->CopyKvBlocks(view, Layer(layer));
  }
  return absl::OkStatus();
}

size_t KvCache::bytes_per_block() const {
  return 2 * static_cast<size_t>(num_global_layers_) * pool_bytes_ /
         static_cast<size_t>(config_.num_blocks);
}

size_t KvCache::bytes_per_local_block() const {
  if (!has_local_pool()) return 0;
  return 2 * static_cast<size_t>(num_layers_ - num_global_layers_) * local_pool_bytes_ /
         static_cast<size_t>(config_.num_local_blocks);
}

}  // namespace iquest
