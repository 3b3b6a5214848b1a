// A sequence's logits do not depend on how its KV cache is paged or how its prompt is batched:
// block size 1/4/16 with blocks scattered through the pool, prefill in one chunk or in chunks
// of 1/3/5 tokens, alone or in a batch of 8 different sequences. Tolerance 1e-6 (normwise).
// Also for Mistral with a 6-token sliding window and the Loop model with a 5-token local window.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "kernels/cpu/cpu_backend.h"
#include "model/llama.h"
#include "tests/testing/random_tensor.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_model.h"

namespace iquest {
namespace {

constexpr double kTolerance = 1e-6;

// A sequence to run: its prompt, the chunk sizes its prefill is cut into, and its blocks.
struct Seq {
  std::vector<int32_t> prompt;
  int chunk_size = 0;  // 0: the whole prompt in one step.
  std::vector<int32_t> block_table;
  std::vector<int32_t> local_block_table;  // Loop models with a local pool.
  int64_t num_computed = 0;
  std::vector<float> logits;  // [prompt.size(), vocab], filled as chunks run.
};

class PagingInvarianceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    TinyModelOptions options;
    options.arch = GetParam();
    options.hidden_size = 64;
    options.num_heads = 4;
    options.num_kv_heads = 2;
    options.num_layers = 2;
    options.vocab_size = 300;
    // Windows shorter than the prompts, so that paging and chunking reach past them.
    if (options.arch == "mistral") options.sliding_window = 6;
    if (options.arch == "loop") options.loop_window = 5;
    ASSERT_OK(WriteTinyModel(dir_.path(), options));
    ASSERT_OK_AND_ASSIGN(model_, LlamaModel::Load(dir_.path(), backend_));
  }

  static std::vector<int32_t> Prompt(int length, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int32_t> ids(length);
    for (int32_t& id : ids) id = static_cast<int32_t>(engine() % 300);
    return ids;
  }

  // Runs all `seqs` together, step by step, until every prompt is fully prefilled; each step
  // takes the next chunk of every unfinished sequence. Blocks are handed out from a shuffled
  // pool of `pool_blocks`.
  // With `local_pool` (Loop models), the local layers get a pool of their own, laid out in
  // another order, and before each step every local block wholly before the next query's
  // window leaves the table (kNoBlock), as the scheduler gives them back.
  void RunTogether(std::vector<Seq>& seqs, int64_t block_size, int64_t pool_blocks,
                   uint32_t shuffle_seed, bool local_pool = false) {
    KvCacheConfig cache_config{pool_blocks, block_size, DType::kF32};
    if (local_pool) cache_config.num_local_blocks = pool_blocks;
    ASSERT_OK_AND_ASSIGN(auto cache, KvCache::Create(backend_, model_->config(), cache_config));
    std::vector<int32_t> pool(pool_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), std::mt19937(shuffle_seed));
    std::vector<int32_t> local(pool.rbegin(), pool.rend());
    size_t next_block = 0;
    for (Seq& s : seqs) {
      const size_t needed = (s.prompt.size() + block_size - 1) / block_size;
      ASSERT_LE(next_block + needed, pool.size());
      s.block_table.assign(pool.begin() + next_block, pool.begin() + next_block + needed);
      s.local_block_table.clear();
      if (local_pool) {
        s.local_block_table.assign(local.begin() + next_block, local.begin() + next_block + needed);
      }
      next_block += needed;
      s.num_computed = 0;
      s.logits.clear();
    }
    const int64_t window = model_->config().loop_window;
    const int64_t vocab = model_->config().vocab_size;
    BatchBuilder builder(block_size);
    for (bool busy = true; busy;) {
      busy = false;
      std::vector<std::pair<Seq*, int64_t>> stepped;  // (sequence, tokens this step)
      for (Seq& s : seqs) {
        const int64_t left = static_cast<int64_t>(s.prompt.size()) - s.num_computed;
        if (left == 0) continue;
        const int64_t count = s.chunk_size > 0 ? std::min<int64_t>(s.chunk_size, left) : left;
        const int64_t first_needed = s.num_computed - window + 1;
        for (int64_t b = 0; local_pool && (b + 1) * block_size <= first_needed; ++b) {
          s.local_block_table[static_cast<size_t>(b)] = -1;  // kNoBlock: given back.
        }
        builder.AddSequence(std::span<const int32_t>(s.prompt).subspan(s.num_computed, count),
                            s.num_computed, s.block_table, LogitsWanted::kAll, s.local_block_table);
        stepped.emplace_back(&s, count);
        busy = true;
      }
      if (!busy) break;
      std::vector<float> logits;
      ASSERT_OK(model_->Forward(builder.Build(), *cache, logits));
      size_t offset = 0;
      for (auto& [s, count] : stepped) {
        s->logits.insert(s->logits.end(), logits.begin() + offset,
                         logits.begin() + offset + count * vocab);
        offset += count * vocab;
        s->num_computed += count;
      }
    }
  }

  std::vector<float> Baseline(const std::vector<int32_t>& prompt) {
    std::vector<Seq> seqs(1);
    seqs[0].prompt = prompt;
    RunTogether(seqs, 16, (prompt.size() + 15) / 16, 0);
    return seqs[0].logits;
  }

  testing::TempDir dir_;
  CpuBackend backend_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_P(PagingInvarianceTest, AnyBlockSizeWithScatteredBlocks) {
  const std::vector<int32_t> prompt = Prompt(37, 1);
  const std::vector<float> baseline = Baseline(prompt);
  for (int64_t block_size : {1, 4, 16}) {
    std::vector<Seq> seqs(1);
    seqs[0].prompt = prompt;
    RunTogether(seqs, block_size, 3 * ((37 + block_size - 1) / block_size), 7);
    EXPECT_LE(testing::MaxRelativeError(seqs[0].logits, baseline), kTolerance)
        << "block_size " << block_size;
  }
}

TEST_P(PagingInvarianceTest, ChunkedPrefill) {
  const std::vector<int32_t> prompt = Prompt(33, 2);
  const std::vector<float> baseline = Baseline(prompt);
  for (int chunk : {1, 3, 5}) {
    for (int64_t block_size : {4, 16}) {
      std::vector<Seq> seqs(1);
      seqs[0].prompt = prompt;
      seqs[0].chunk_size = chunk;
      RunTogether(seqs, block_size, 40, 11);
      EXPECT_LE(testing::MaxRelativeError(seqs[0].logits, baseline), kTolerance)
          << "chunk " << chunk << " block_size " << block_size;
    }
  }
}

TEST_P(PagingInvarianceTest, BatchOfEightDifferentSequences) {
  // Lengths straddle block boundaries; chunk sizes differ, so later steps mix one-token
  // "decode-like" chunks with longer prefill chunks.
  const int lengths[8] = {1, 15, 16, 17, 33, 7, 40, 2};
  const int chunks[8] = {0, 5, 0, 3, 1, 0, 16, 1};
  std::vector<Seq> batch(8);
  for (int i = 0; i < 8; ++i) {
    batch[i].prompt = Prompt(lengths[i], 100 + i);
    batch[i].chunk_size = chunks[i];
  }
  RunTogether(batch, 4, 80, 13);
  for (int i = 0; i < 8; ++i) {
    const std::vector<float> alone = Baseline(batch[i].prompt);
    EXPECT_LE(testing::MaxRelativeError(batch[i].logits, alone), kTolerance) << "sequence " << i;
  }
}

// Loop models: the local layers in a pool of their own, their out-of-window blocks gone, give
// the logits of the local layers paged on the global tables, at any block size and chunking.
class LoopPagingTest : public PagingInvarianceTest {};

TEST_P(LoopPagingTest, LocalPoolMatchesSharedTables) {
  const std::vector<int32_t> prompt = Prompt(37, 3);
  const std::vector<float> baseline = Baseline(prompt);
  for (int64_t block_size : {1, 4, 16}) {
    for (int chunk : {0, 1, 3, 5}) {
      std::vector<Seq> seqs(1);
      seqs[0].prompt = prompt;
      seqs[0].chunk_size = chunk;
      RunTogether(seqs, block_size, 3 * ((37 + block_size - 1) / block_size), 17,
                  /*local_pool=*/true);
      EXPECT_LE(testing::MaxRelativeError(seqs[0].logits, baseline), kTolerance)
          << "block_size " << block_size << " chunk " << chunk;
    }
  }
}

TEST_P(PagingInvarianceTest, MalformedBatchIsAnErrorNotACrash) {
  KvCacheConfig cache_config{2, 4, DType::kF32};
  ASSERT_OK_AND_ASSIGN(auto cache, KvCache::Create(backend_, model_->config(), cache_config));
  std::vector<float> logits;
  BatchBuilder builder(4);
  builder.AddSequence(std::vector<int32_t>{1, 2, 3}, 0, std::vector<int32_t>{0},
                      LogitsWanted::kLast);
  BatchInputs inputs = builder.Build();
  inputs.token_ids[1] = 300;  // Outside the vocabulary.
  EXPECT_STATUS_CODE(model_->Forward(inputs, *cache, logits), absl::StatusCode::kInvalidArgument);
  inputs.token_ids[1] = 5;
  inputs.block_tables[0] = 2;  // Outside the pool.
  EXPECT_STATUS_CODE(model_->Forward(inputs, *cache, logits), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Loop, LoopPagingTest, ::testing::Values("loop"));
INSTANTIATE_TEST_SUITE_P(Architectures, PagingInvarianceTest,
                         ::testing::Values("llama", "qwen2", "mistral", "loop"));

}  // namespace
}  // namespace iquest
