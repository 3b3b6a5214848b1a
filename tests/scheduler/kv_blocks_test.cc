// KvBlocks with a local (sliding-window) pool, tiny numbers (block_size 4, window 5): the local
// table gives back the blocks wholly before the next query's window (kNoBlock entries, keyed
// ones still cached), a prefix hit needs the global prefix and the local blocks of its last
// window, growth is all or nothing across both pools, and fork / copy-on-write / free keep both
// pools exact. Diagrams: | separates blocks.
#include "scheduler/kv_blocks.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

using Ids = std::vector<int32_t>;

Request MakeRequest(int length, int first_token = 1) {
  Request r;
  Ids prompt;
  for (int i = 0; i < length; ++i) prompt.push_back(first_token + i);
  r.SetPrompt(std::move(prompt));
  return r;
}

// Computes the request's tokens up to `num_tokens` the way the scheduler does: grow, then
// AfterStep.
void Compute(KvBlocks& blocks, Request& r, int64_t num_tokens) {
  std::vector<BlockCopy> copies, local_copies;
  ASSERT_TRUE(blocks.Fits(r, num_tokens));
  blocks.Grow(r, num_tokens, nullptr, copies, local_copies);
  r.num_computed_tokens = num_tokens;
  blocks.AfterStep(r);
}

TEST(KvBlocksTest, LocalTableKeepsOnlyTheWindow) {
  KvBlocks blocks(64, 4, /*enable_prefix_caching=*/true, /*local_window=*/5, /*local=*/16);
  Request r = MakeRequest(40);
  // 13 tokens computed: the next query (position 13) sees 9..13, so block 0 (0..3) and block 1
  // (4..7) go back; block 2 (8..11) and 3 (12..15) stay.
  Compute(blocks, r, 13);
  EXPECT_EQ(r.block_ids.size(), 4u);
  ASSERT_EQ(r.local_block_ids.size(), 4u);
  EXPECT_EQ(r.local_block_ids[0], kNoBlock);
  EXPECT_EQ(r.local_block_ids[1], kNoBlock);
  EXPECT_NE(r.local_block_ids[2], kNoBlock);
  EXPECT_EQ(blocks.local()->num_used_blocks(), 2);
  EXPECT_EQ(blocks.local()->num_cached_blocks(), 2);  // Full, keyed, given back: still cached.
  // However long the context, the local pool holds the window (and the next block).
  for (int64_t n : {20, 30, 39}) {
    Compute(blocks, r, n);
    EXPECT_LE(blocks.local()->num_used_blocks(), 3) << n;
  }
  EXPECT_EQ(blocks.global().num_used_blocks(), 10);
  EXPECT_OK(blocks.CheckInvariants({&r}));
  blocks.Free(r);
  EXPECT_EQ(blocks.global().num_used_blocks(), 0);
  EXPECT_EQ(blocks.local()->num_used_blocks(), 0);
  EXPECT_OK(blocks.CheckInvariants({}));
}

TEST(KvBlocksTest, PrefixHitNeedsTheLocalWindowToo) {
  KvBlocks blocks(64, 4, true, 5, 16);
  Request a = MakeRequest(20);  // |1..4|5..8|9..12|13..16|17..20
  Compute(blocks, a, 20);
  // a's next query (20) sees 16..20: its local blocks 0..3 went back, keyed. Same first 16
  // tokens: the global pool has 4 blocks; the local pool must still cache the window before
  // token 16 (positions 12..15: block 3) for a 16-token hit.
  EXPECT_EQ(a.local_block_ids[3], kNoBlock);
  Request b = MakeRequest(17);
  KvBlocks::Prefix hit = blocks.FindCachedPrefix(b);
  EXPECT_EQ(hit.num_tokens, 16);
  EXPECT_EQ(hit.global.block_ids, Ids(a.block_ids.begin(), a.block_ids.begin() + 4));
  EXPECT_EQ(hit.local.block_ids.size(), 4u);
  EXPECT_EQ(hit.local.block_ids[2], kNoBlock);  // Before the window: not needed.
  EXPECT_NE(hit.local.block_ids[3], kNoBlock);  // Found by its key, though a gave it back.
  std::vector<BlockCopy> copies, local_copies;
  ASSERT_TRUE(blocks.Fits(b, 17, &hit));
  blocks.Grow(b, 17, &hit, copies, local_copies);
  EXPECT_OK(blocks.CheckInvariants({&a, &b}));
  blocks.Free(a);
  blocks.Free(b);
  // Evict the local pool's cached blocks (16 blocks: allocate them all), keep the global ones:
  // no hit is left, since no hit's last window is cached any more.
  Request filler = MakeRequest(64, 1000);
  ASSERT_TRUE(blocks.Fits(filler, 64));
  blocks.Grow(filler, 64, nullptr, copies, local_copies);
  Request c = MakeRequest(17);
  EXPECT_EQ(blocks.FindCachedPrefix(c).num_tokens, 0);
  EXPECT_GT(blocks.global().num_cached_blocks(), 0);
}

TEST(KvBlocksTest, GrowthIsAllOrNothingAcrossPools) {
  KvBlocks blocks(64, 4, true, 5, 3);  // A local pool of 3 blocks.
  Request r = MakeRequest(40);
  EXPECT_TRUE(blocks.Fits(r, 12));
  EXPECT_FALSE(blocks.Fits(r, 13));  // 4 local blocks: the global pool alone would have them.
  EXPECT_EQ(blocks.SlotsPast(r, 0), 12);
}

TEST(KvBlocksTest, ForkSharesBothTablesAndCopyOnWriteSeparates) {
  KvBlocks blocks(64, 4, true, 5, 16);
  Request parent = MakeRequest(10);
  Compute(blocks, parent, 10);
  Request child = parent;
  child.block_ids.clear();
  child.local_block_ids.clear();
  blocks.Fork(parent, child);
  EXPECT_EQ(child.local_block_ids, parent.local_block_ids);
  EXPECT_OK(blocks.CheckInvariants({&parent, &child}));
  // Writing position 10 (block 2, shared) copies it in both pools.
  std::vector<BlockCopy> copies, local_copies;
  blocks.Grow(child, 11, nullptr, copies, local_copies);
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(local_copies.size(), 1u);
  EXPECT_NE(child.local_block_ids[2], parent.local_block_ids[2]);
  EXPECT_OK(blocks.CheckInvariants({&parent, &child}));
  blocks.Free(parent);
  blocks.Free(child);
  EXPECT_EQ(blocks.local()->num_used_blocks(), 0);
}

}  // namespace
}  // namespace iquest
