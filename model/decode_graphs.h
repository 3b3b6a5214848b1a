// DecodeGraphs: runs decode-only steps as captured graphs on backends that SupportsGraphs()
// (CUDA). The batch is padded to a bucket of sequences (1, 2, 4, ... 256) and its block tables
// to a bucket of blocks per sequence (16, 32, 64, ...); each (sequence bucket, block bucket) is
// captured once, after one uncaptured run of that shape has sized every buffer, and replayed
// after that. Padding rows compute garbage that nothing reads and store nothing (kPaddingSlot).
//
// The model lends it three hooks, so that the forward pass itself stays in llama.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "model/batch_inputs.h"
#include "model/kv_cache.h"

namespace iquest {

struct DecodeGraphHooks {
  // Makes the workspace hold a step of this shape (it may move: every graph is then stale).
  std::function<absl::Status(int64_t num_tokens, int64_t num_seqs, int64_t max_blocks,
                             int64_t num_logits)>
      ensure_workspace;
  // Uploads a batch's index arrays, with attention launch bounds fixed for the bucket; returns
  // the device logits view [num_seqs of the batch, vocab] that the next run_device fills.
  std::function<TensorView(const BatchInputs& padded, int64_t max_seq_len)> upload;
  // Every device op of the uploaded step (what a graph captures).
  std::function<void()> run_device;
  // An address inside the workspace: when it changes, the workspace moved.
  std::function<const void*()> workspace_base;
};

class DecodeGraphs {
 public:
  // A step a decode graph can run: every sequence brings exactly one token and wants its
  // logits, in order, and there are at most 256 sequences.
  static bool Accepts(const BatchInputs& inputs);

  // Runs `inputs` (Accepts() must hold) and returns its device logits, f32 [num_seqs, vocab],
  // valid until the next step.
  absl::StatusOr<TensorView> Run(const BatchInputs& inputs, KvCache& cache, Backend& backend,
                                 const DecodeGraphHooks& hooks);

  int64_t num_graphs() const { return static_cast<int64_t>(graphs_.size()); }

 private:
  // Lays `inputs` out as the bucket's padded batch in padded_.
  void Pad(const BatchInputs& inputs, int64_t seq_bucket, int64_t block_bucket);

  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<StepGraph>> graphs_;
  std::set<std::pair<int64_t, int64_t>> warmed_;
  // What the graphs point at: when either changes, every graph is stale.
  const void* workspace_base_ = nullptr;
  const void* cache_base_ = nullptr;
  uint64_t scratch_epoch_ = 0;
  BatchInputs padded_;  // Reused host staging.
};

}  // namespace iquest
