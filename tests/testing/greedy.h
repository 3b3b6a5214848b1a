// Greedy continuation straight through LlamaModel (no engine): the backend parity tests' probe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/backend.h"

namespace iquest::testing {

// The model at `dir` on `backend` continues `prompt` greedily for `num_tokens` tokens, one
// sequence, the KV cache in `kv_dtype`. CHECK-fails on any error.
std::vector<int32_t> Greedy(const std::string& dir, Backend& backend, std::vector<int32_t> prompt,
                            int num_tokens, DType kv_dtype = DType::kF32);

// The backend parity tests' model: a tiny `arch` ("llama", tied embeddings; "qwen2"; "mistral"
// with an 8-token sliding window; "loop", two passes, an 8-token local window) in `dtype` with
// 8/2 heads and a 1000-token vocabulary, written to `dir`.
absl::Status WriteParityModel(const std::string& dir, const std::string& arch,
                              const std::string& dtype);

// Their 20-token prompt: past the fast CPU backend's bf16-dot threshold, so prefill takes that
// path where it exists.
std::vector<int32_t> ParityPrompt();

}  // namespace iquest::testing
