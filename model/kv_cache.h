// KvCache: the paged K/V pools of every layer in backend memory. Which blocks belong to which
// sequence is not its business: block tables come from the caller (the BlockManager).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/model_config.h"

namespace iquest {

struct KvCacheConfig {
  int64_t num_blocks = 0;
  int64_t block_size = 16;  // Tokens per block.
  DType dtype = DType::kF32;
  // Loop models: blocks of the local (windowed) KV layers' own pool (scheduler/kv_blocks.h);
  // 0: those layers are paged like the global ones, num_blocks each, on the same tables.
  int64_t num_local_blocks = 0;
};

class KvCache {
 public:
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend& backend, const ModelConfig& model,
                                                         const KvCacheConfig& config);

  // KV layer `layer` (ModelConfig::num_kv_layers: a Loop model's local layers come after the
  // global ones); its num_blocks is its pool's.
  PagedKvView Layer(int64_t layer) const;
  // Copies whole blocks in every layer of the global pool (with a local pool: the global
  // layers; without: every layer): pairs of (src_block, dst_block), for copy-on-write.
  absl::Status CopyBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs);
  // The same in the local pool's layers.
  absl::Status CopyLocalBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs);
  int64_t num_blocks() const { return config_.num_blocks; }
  int64_t block_size() const { return config_.block_size; }
  bool has_local_pool() const { return config_.num_local_blocks > 0; }
  int64_t num_local_blocks() const { return config_.num_local_blocks; }
  // Bytes of one block across all the layers of its pool, K and V: what one block costs.
  size_t bytes_per_block() const;
  size_t bytes_per_local_block() const;

 private:
  KvCache() = default;
  absl::Status CopyIn(const std::vector<std::pair<int32_t, int32_t>>& pairs, int64_t num_blocks,
                      int64_t first_layer, int64_t end_layer);

  KvCacheConfig config_;
  int64_t num_layers_ = 0;         // All KV layers.
  int64_t num_global_layers_ = 0;  // The first ones, in the global pool (all without a local one).
  size_t local_pool_bytes_ = 0;    // One local layer's K (or V) pool.
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  size_t pool_bytes_ = 0;  // One layer's K (or V) pool.
  std::unique_ptr<DeviceBuffer> buffer_;
  Backend* backend_ = nullptr;
  std::unique_ptr<DeviceBuffer> copy_pairs_;  // Device staging for CopyBlocks.
  int64_t copy_pairs_capacity_ = 0;
};

}  // namespace iquest
