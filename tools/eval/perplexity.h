// Perplexity exactly as llama.cpp's llama-perplexity computes it (tools/perplexity, its default
// mode), so that a quantized file's quality can be compared with llama.cpp's on the same file:
//   the text is tokenized once as a prompt (BOS first when the tokenizer adds one); it must hold
//   at least 2 * n_ctx tokens; chunk c is tokens [c * n_ctx, (c + 1) * n_ctx) (n_chunk =
//   tokens / n_ctx, or fewer when asked), run from position 0 in a fresh cache with its first
//   token replaced by BOS (when the tokenizer adds one); the positions j in [n_ctx / 2,
//   n_ctx - 1) of each chunk are scored, row j predicting token j + 1, by -log softmax in double.
//   PPL = exp(mean nll); its uncertainty exp(mean) * sqrt((mean(nll^2) - mean^2) / (count - 1)),
//   llama.cpp's "+/-".
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama.h"

namespace iquest {

struct PerplexityOptions {
  int64_t context = 512;    // n_ctx: tokens per chunk.
  int64_t max_chunks = -1;  // -1: every whole chunk of the text.
  int64_t batch = 0;        // Prefill tokens per forward pass; 0 = a whole chunk.
  int32_t bos_id = -1;      // Replaces each chunk's first token; -1 = none (no BOS added).
};

struct Perplexity {
  double ppl = 0;
  double uncertainty = 0;  // llama.cpp's "+/-".
  int64_t scored_tokens = 0;
  std::vector<double> running_ppl;  // After each chunk: llama.cpp's "[c]x.xxxx" figures.
};

// `tokens` is the whole tokenized text. kInvalidArgument when it is shorter than 2 * context
// or the context does not fit the model.
absl::StatusOr<Perplexity> LlamaCppPerplexity(LlamaModel& model, std::vector<int32_t> tokens,
                                              const PerplexityOptions& options);

}  // namespace iquest
