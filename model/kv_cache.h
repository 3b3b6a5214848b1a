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
};

class KvCache {
 public:
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend& backend, const ModelConfig& model,
                                                         const KvCacheConfig& config);

  PagedKvView Layer(int64_t layer) const;
  // Copies whole blocks in every layer: pairs of (src_block, dst_block), for copy-on-write.
  absl::Status CopyBlocks(const std::vector<std::pair<int32_t, int32_t>>& pairs);
  int64_t num_blocks() const { return config_.num_blocks; }
  int64_t block_size() const { return config_.block_size; }
  // Bytes of one block across all layers, K and V: what one block of capacity costs.
  size_t bytes_per_block() const;

 private:
  KvCache() = default;
  KvCacheConfig config_;
  int64_t num_layers_ = 0;
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  size_t pool_bytes_ = 0;  // One layer's K (or V) pool.
  std::unique_ptr<DeviceBuffer> buffer_;
  Backend* backend_ = nullptr;
  std::unique_ptr<DeviceBuffer> copy_pairs_;  // Device staging for CopyBlocks.
  int64_t copy_pairs_capacity_ = 0;
};

}  // namespace iquest
