// Greedy continuation straight through LlamaModel (no engine): the backend parity tests' probe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/backend.h"

namespace iquest::testing {

// The model at `dir` on `backend` continues `prompt` greedily for `num_tokens` tokens, one
// sequence, the KV cache in `kv_dtype`. CHECK-fails on any error.
std::vector<int32_t> Greedy(const std::string& dir, Backend& backend, std::vector<int32_t> prompt,
                            int num_tokens, DType kv_dtype = DType::kF32);

}  // namespace iquest::testing
