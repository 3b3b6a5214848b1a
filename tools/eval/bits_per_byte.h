// Held-out bits per byte of a model on text files, under the protocol the demo model's training
// script (tools/train_demo_model/bpb.py) also uses, so that the two figures can be compared:
//   each file is encoded without special tokens and framed as [BOS] ids [EOS]; windows of at most
//   `context` tokens start every context - 1 tokens; a window's first token is given and each
//   other token is scored from the window's prefix (positions restart at 0 in every window). So
//   every token after BOS, EOS included, is scored exactly once.
//   bits per byte = sum of -log2 p(token) / the files' UTF-8 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama.h"
#include "model/tokenizer/tokenizer.h"

namespace iquest {

struct TokenWindow {
  int64_t begin = 0;
  int64_t size = 0;  // Tokens in the window; size - 1 of them are scored.
};

// -log softmax(row)[target] (natural log), in double so that summing ~1e5 of them stays exact
// enough.
double NegLogProb(const float* row, int64_t vocab, int32_t target);

// The windows of a framed file of `num_tokens` tokens.
std::vector<TokenWindow> ScoringWindows(int64_t num_tokens, int64_t context);

struct BitsPerByte {
  double bits = 0;  // Sum of -log2 p over the scored tokens.
  int64_t scored_tokens = 0;
  int64_t bytes = 0;
  double value() const { return bytes > 0 ? bits / static_cast<double>(bytes) : 0; }
};

// Scores `texts` with `model` on its CPU backend, `windows_per_step` windows per forward pass.
absl::StatusOr<BitsPerByte> HeldOutBitsPerByte(LlamaModel& model, const Tokenizer& tokenizer,
                                               const std::vector<std::string>& texts,
                                               int64_t context, int64_t windows_per_step = 8);

}  // namespace iquest
