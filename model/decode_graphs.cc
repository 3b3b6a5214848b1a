#include "model/decode_graphs.h"

#include <algorithm>

#include "common/check.h"
#include "common/status.h"

namespace iquest {
namespace {

constexpr int64_t kMaxGraphSeqs = 256;
constexpr int64_t kMinGraphBlocks = 16;

int64_t PowerOfTwoAtLeast(int64_t n, int64_t floor) {
  int64_t p = floor;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

bool DecodeGraphs::Accepts(const BatchInputs& in) {
  const int64_t s = in.num_seqs();
  if (s == 0 || s > kMaxGraphSeqs || in.num_tokens() != s) return false;
  if (static_cast<int64_t>(in.logits_indices.size()) != s) return false;
  for (int64_t i = 0; i < s; ++i) {
    if (in.logits_indices[i] != i || in.query_start_loc[i] != i) return false;
  }
  return true;
}

// Real rows first, then rows of token 0 at position 0 in a one-token context whose block table
// is all block 0, stored nowhere.
void DecodeGraphs::Pad(const BatchInputs& in, int64_t seq_bucket, int64_t block_bucket) {
  BatchInputs& p = padded_;
  p.token_ids.assign(in.token_ids.begin(), in.token_ids.end());
  p.positions.assign(in.positions.begin(), in.positions.end());
  p.slot_mapping.assign(in.slot_mapping.begin(), in.slot_mapping.end());
  p.seq_lens.assign(in.seq_lens.begin(), in.seq_lens.end());
  p.token_ids.resize(seq_bucket, 0);
  p.positions.resize(seq_bucket, 0);
  p.slot_mapping.resize(seq_bucket, kPaddingSlot);
  p.seq_lens.resize(seq_bucket, 1);
  p.query_start_loc.resize(seq_bucket + 1);
  p.logits_indices.resize(seq_bucket);
  for (int64_t i = 0; i <= seq_bucket; ++i) p.query_start_loc[i] = static_cast<int32_t>(i);
  for (int64_t i = 0; i < seq_bucket; ++i) p.logits_indices[i] = static_cast<int32_t>(i);
  p.max_blocks_per_seq = static_cast<int32_t>(block_bucket);
  p.block_tables.assign(static_cast<size_t>(seq_bucket * block_bucket), 0);
  for (int64_t s = 0; s < in.num_seqs(); ++s) {
    std::copy_n(in.block_tables.begin() + s * in.max_blocks_per_seq, in.max_blocks_per_seq,
                p.block_tables.begin() + s * block_bucket);
  }
}

absl::StatusOr<TensorView> DecodeGraphs::Run(const BatchInputs& in, KvCache& cache,
                                             Backend& backend, const DecodeGraphHooks& hooks) {
  CHECK(Accepts(in));
  const int64_t num_seqs = in.num_seqs();
  const int64_t seq_bucket = PowerOfTwoAtLeast(num_seqs, 1);
  const int64_t block_bucket = PowerOfTwoAtLeast(in.max_blocks_per_seq, kMinGraphBlocks);
  // Size the workspace for the largest decode graph once, so that decode shapes never move it
  // (a prefill bigger than this still may, and then every graph is recaptured).
  RETURN_IF_ERROR(hooks.ensure_workspace(std::max<int64_t>(seq_bucket, kMaxGraphSeqs / 4),
                                         seq_bucket, block_bucket, seq_bucket));
  Pad(in, seq_bucket, block_bucket);
  // Fixed launch bounds for the bucket, so that the captured grids fit every step in it.
  const TensorView logits = hooks.upload(padded_, block_bucket * cache.block_size());

  if (workspace_base_ != hooks.workspace_base() || cache_base_ != cache.Layer(0).k ||
      scratch_epoch_ != backend.scratch_epoch()) {
    graphs_.clear();
    warmed_.clear();
    workspace_base_ = hooks.workspace_base();
    cache_base_ = cache.Layer(0).k;
  }
  const std::pair<int64_t, int64_t> key{seq_bucket, block_bucket};
  auto found = graphs_.find(key);
  if (found != graphs_.end()) {
    found->second->Replay();
  } else if (!warmed_.contains(key)) {
    // First time at this shape: run it plainly; that grows any scratch it needs.
    hooks.run_device();
    warmed_.insert(key);
  } else {
    backend.BeginCapture();
    hooks.run_device();
    std::unique_ptr<StepGraph> graph = backend.EndCapture();
    CHECK(graph != nullptr);
    graph->Replay();
    graphs_.emplace(key, std::move(graph));
  }
  // Capture must not have moved scratch (it CHECKs); the sizing run may have.
  scratch_epoch_ = backend.scratch_epoch();
  return logits.Rows(0, num_seqs);
}

}  // namespace iquest
