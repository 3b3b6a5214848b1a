// Per-ISA element-wise and attention kernels of the fast CPU backend. Each function exists once
// per ISA namespace (avx2, avx512): the same source (vector_ops_impl.inc, attention_impl.inc) is
// compiled under each ISA's flags and the backend calls the one CPUID allows.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace iquest::cpu {

// One attention work item: query rows [row_begin, row_end) of sequence `seq`, all query heads
// of KV head `kv_head`.
struct AttentionTask {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t row_end;
};

#define IQUEST_DECLARE_VECTOR_OPS(ns)                                                            \
  namespace ns {                                                                                 \
  /* out[i] = silu(gate[i]) * up[i] for i in [begin, end). */                                    \
  void SiluMul(const float* gate, const float* up, float* out, int64_t begin, int64_t end);      \
  /* x[i] = exp(x[i] - shift), vectorized. */                                                    \
  void ExpShifted(float* x, int64_t n, float shift);                                             \
  /* Runs tasks [begin, end) of PagedAttention over an f32 cache. */                             \
  void AttentionTasks(const float* q, const PagedKvView& kv, const AttentionArgs& args,          \
                      int64_t num_heads, const AttentionTask* tasks, int64_t begin, int64_t end, \
                      float* out);                                                               \
  }

IQUEST_DECLARE_VECTOR_OPS(avx2)
IQUEST_DECLARE_VECTOR_OPS(avx512)

#undef IQUEST_DECLARE_VECTOR_OPS

}  // namespace iquest::cpu
