#include <cstring>

#include "common/check.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {

void WriteKv(TensorView k, TensorView v, TensorView slot_mapping, const PagedKvView& kv) {
  const int64_t num_tokens = k.dim(0);
  CHECK(k.ShapeIs({num_tokens, kv.num_kv_heads, kv.head_dim})) << k.ShapeString();
  CHECK(v.ShapeIs({num_tokens, kv.num_kv_heads, kv.head_dim})) << v.ShapeString();
  CHECK(slot_mapping.ShapeIs({num_tokens})) << slot_mapping.ShapeString();
  const float* k_data = k.as<float>();
  const float* v_data = v.as<float>();
  const int32_t* slots = slot_mapping.as<int32_t>();
  const int64_t num_slots = kv.num_blocks * kv.block_size;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] == kPaddingSlot) continue;
    CHECK(slots[t] >= 0 && slots[t] < num_slots) << "slot " << slots[t] << " of " << num_slots;
    for (int64_t h = 0; h < kv.num_kv_heads; ++h) {
      for (int64_t d = 0; d < kv.head_dim; ++d) {
        const int64_t src = (t * kv.num_kv_heads + h) * kv.head_dim + d;
        const int64_t dst = KvOffset(kv, slots[t], h, d);
        StoreFromFloat(kv.k, kv.dtype, dst, k_data[src]);
        StoreFromFloat(kv.v, kv.dtype, dst, v_data[src]);
      }
    }
  }
}

void CopyKvBlocks(TensorView pairs, const PagedKvView& kv) {
  CHECK(pairs.rank() == 2 && pairs.dim(1) == 2) << pairs.ShapeString();
  const int32_t* p = pairs.as<int32_t>();
  // With the head-major layout a block is one contiguous run in each pool.
  const size_t block_bytes =
      static_cast<size_t>(kv.num_kv_heads * kv.block_size * kv.head_dim) * DTypeSize(kv.dtype);
  for (int64_t i = 0; i < pairs.dim(0); ++i) {
    const int32_t src = p[2 * i];
    const int32_t dst = p[2 * i + 1];
    CHECK(src >= 0 && src < kv.num_blocks && dst >= 0 && dst < kv.num_blocks && src != dst)
        << "copy " << src << " -> " << dst;
    for (void* pool : {kv.k, kv.v}) {
      char* base = static_cast<char*>(pool);
      std::memcpy(base + dst * block_bytes, base + src * block_bytes, block_bytes);
    }
  }
}

}  // namespace iquest::cpu
