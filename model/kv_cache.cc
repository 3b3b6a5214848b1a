#include "model/kv_cache.h"

#include <cstring>
#include <limits>

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
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->config_ = config;
  cache->num_layers_ = model.num_kv_layers();
  cache->num_kv_heads_ = model.num_kv_heads;
  cache->head_dim_ = model.head_dim;
  std::optional<uint64_t> bytes = CheckedMul(config.num_blocks, config.block_size);
  for (uint64_t factor : {static_cast<uint64_t>(model.num_kv_heads),
                          static_cast<uint64_t>(model.head_dim), DTypeSize(config.dtype)}) {
    if (bytes) bytes = CheckedMul(*bytes, factor);
  }
  const std::optional<uint64_t> total =
      bytes ? CheckedMul(*bytes, 2 * static_cast<uint64_t>(model.num_kv_layers())) : std::nullopt;
  if (!total) return absl::InvalidArgumentError("KV cache size overflows");
  cache->pool_bytes_ = *bytes;
  cache->backend_ = &backend;
  ASSIGN_OR_RETURN(cache->buffer_, backend.Allocate(*total));
  return cache;
}

PagedKvView KvCache::Layer(int64_t layer) const {
  CHECK(layer >= 0 && layer < num_layers_) << "layer " << layer;
  char* base = static_cast<char*>(buffer_->data()) + 2 * layer * pool_bytes_;
  PagedKvView view;
  view.k = base;
  view.v = base + pool_bytes_;
  view.dtype = config_.dtype;
  view.num_blocks = config_.num_blocks;
  view.block_size = config_.block_size;
  view.num_kv_heads = num_kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

absl::Status KvCache::CopyBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  if (pairs.empty()) return absl::OkStatus();
  const int64_t n = static_cast<int64_t>(pairs.size());
  for (const auto& [src, dst] : pairs) {
    if (src < 0 || src >= config_.num_blocks || dst < 0 || dst >= config_.num_blocks ||
        src == dst) {
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
  for (int64_t layer = 0; layer < num_layers_; ++layer) backend_->CopyKvBlocks(view, Layer(layer));
  return absl::OkStatus();
}

size_t KvCache::bytes_per_block() const {
  return 2 * static_cast<size_t>(num_layers_) * pool_bytes_ /
         static_cast<size_t>(config_.num_blocks);
}

}  // namespace iquest
