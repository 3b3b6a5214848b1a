// BlockManager with tiny numbers (block_size 4, 8 blocks): exact block ids, free-queue order,
// prefix-cache hits and evictions, copy-on-write and fork. Diagrams: | separates blocks.
#include "scheduler/block_manager.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace iquest {
namespace {

using Ids = std::vector<int32_t>;

Request MakeRequest(Ids prompt, std::string salt = "") {
  Request r;
  r.SetPrompt(std::move(prompt));
  r.cache_salt = std::move(salt);
  return r;
}

class BlockManagerTest : public ::testing::Test {
 protected:
  void ExpectConsistent(std::vector<const Request*> live) {
    EXPECT_OK(blocks_.CheckInvariants(live));
    EXPECT_EQ(blocks_.num_used_blocks() + blocks_.num_free_blocks(), 8);
  }
  BlockManager blocks_{8, 4, /*enable_prefix_caching=*/true};
};

TEST_F(BlockManagerTest, AllocatesFromTheFrontAndFreesTailFirst) {
  Request a = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 9});  // |1 2 3 4|5 6 7 8|9
  ASSERT_TRUE(blocks_.Allocate(a, 9));
  EXPECT_EQ(a.block_ids, (Ids{0, 1, 2}));
  Request b = MakeRequest({7, 7});
  ASSERT_TRUE(blocks_.Allocate(b, 2));
  EXPECT_EQ(b.block_ids, (Ids{3}));
  EXPECT_EQ(blocks_.FreeQueue(), (Ids{4, 5, 6, 7}));
  ExpectConsistent({&a, &b});
  blocks_.Free(a);  // Tail first: 2, then 1, then 0 join the back of the queue.
  EXPECT_EQ(blocks_.FreeQueue(), (Ids{4, 5, 6, 7, 2, 1, 0}));
  ExpectConsistent({&b});
}

TEST_F(BlockManagerTest, AllocationIsAllOrNothing) {
  Request a = MakeRequest(Ids(30, 1));
  EXPECT_FALSE(blocks_.Allocate(a, 33));  // 9 blocks of 8.
  EXPECT_TRUE(a.block_ids.empty());
  EXPECT_EQ(blocks_.num_free_blocks(), 8);
  EXPECT_TRUE(blocks_.Allocate(a, 32));
  EXPECT_EQ(blocks_.num_free_blocks(), 0);
}

TEST_F(BlockManagerTest, PrefixCacheHitsFullBlocksOnly) {
  Request a = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});  // |1 2 3 4|5 6 7 8|9 10
  ASSERT_TRUE(blocks_.Allocate(a, 10));
  a.num_computed_tokens = 10;
  blocks_.CacheFullBlocks(a);  // Blocks 0 and 1 are full; block 2 is not.
  // Same first block, different second block.
  Request b = MakeRequest({1, 2, 3, 4, 5, 6, 7, 0, 9});
  BlockManager::CachedPrefix hit = blocks_.FindCachedPrefix(b);
  EXPECT_EQ(hit.block_ids, (Ids{0}));
  EXPECT_EQ(hit.num_tokens, 4);
  ASSERT_TRUE(blocks_.Allocate(b, 9, &hit));
  EXPECT_EQ(b.block_ids, (Ids{0, 3, 4}));  // Shares block 0, then fresh blocks.
  ExpectConsistent({&a, &b});
}

TEST_F(BlockManagerTest, KvEventsAndResetFollowTheKeys) {
  blocks_.set_record_kv_events(true);
  Request a = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 9});  // |1 2 3 4|5 6 7 8|9
  ASSERT_TRUE(blocks_.Allocate(a, 9));
  a.num_computed_tokens = 9;
  blocks_.CacheFullBlocks(a);
  std::vector<KvCacheEvent> events = blocks_.TakeKvEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].token_ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_FALSE(events[0].parent_block_hash.has_value());
  EXPECT_EQ(events[1].parent_block_hash, events[0].block_hash);
  EXPECT_EQ(blocks_.ResetPrefixCache().code(), absl::StatusCode::kFailedPrecondition);  // In use.
  blocks_.Free(a);
  EXPECT_EQ(blocks_.num_cached_blocks(), 2);
  ASSERT_OK(blocks_.ResetPrefixCache());
  EXPECT_EQ(blocks_.num_cached_blocks(), 0);
  EXPECT_TRUE(blocks_.KeyedBlockHashes().empty());
  events = blocks_.TakeKvEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, KvCacheEvent::Kind::kAllCleared);
  Request b = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(blocks_.FindCachedPrefix(b).num_tokens, 0);  // Nothing is cached any more.
  ExpectConsistent({});
}

TEST_F(BlockManagerTest, AtLeastOneTokenIsLeftToCompute) {
  Request a = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8});
  ASSERT_TRUE(blocks_.Allocate(a, 8));
  a.num_computed_tokens = 8;
  blocks_.CacheFullBlocks(a);
  Request b = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8});     // Identical prompt: 8 tokens cached.
  EXPECT_EQ(blocks_.FindCachedPrefix(b).num_tokens, 4);  // Not 8: the last token must run.
}

TEST_F(BlockManagerTest, CacheSaltSeparatesTenants) {
  Request a = MakeRequest({1, 2, 3, 4, 5}, "tenant-a");
  ASSERT_TRUE(blocks_.Allocate(a, 5));
  a.num_computed_tokens = 5;
  blocks_.CacheFullBlocks(a);
  Request same = MakeRequest({1, 2, 3, 4, 5}, "tenant-a");
  Request other = MakeRequest({1, 2, 3, 4, 5}, "tenant-b");
  EXPECT_EQ(blocks_.FindCachedPrefix(same).num_tokens, 4);
  EXPECT_EQ(blocks_.FindCachedPrefix(other).num_tokens, 0);
}

TEST_F(BlockManagerTest, FreedCachedBlocksAreReusedThenEvictedInLruOrder) {
  Request a = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 9});
  ASSERT_TRUE(blocks_.Allocate(a, 9));  // Blocks 0, 1, 2.
  a.num_computed_tokens = 9;
  blocks_.CacheFullBlocks(a);
  blocks_.Free(a);
  EXPECT_EQ(blocks_.num_cached_blocks(), 2);  // Blocks 0 and 1 keep their keys.
  EXPECT_EQ(blocks_.FreeQueue(), (Ids{3, 4, 5, 6, 7, 2, 1, 0}));
  ExpectConsistent({});
  // A hit takes block 0 and 1 out of the middle of the queue.
  Request b = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 42});
  BlockManager::CachedPrefix hit = blocks_.FindCachedPrefix(b);
  ASSERT_TRUE(blocks_.Allocate(b, 9, &hit));
  EXPECT_EQ(b.block_ids, (Ids{0, 1, 3}));
  EXPECT_EQ(blocks_.FreeQueue(), (Ids{4, 5, 6, 7, 2}));
  b.num_computed_tokens = 9;
  blocks_.CacheFullBlocks(b);
  blocks_.Free(b);
  EXPECT_EQ(blocks_.FreeQueue(), (Ids{4, 5, 6, 7, 2, 3, 1, 0}));
  // Filling the pool evicts from the front: 4..7, 2, 3 are plain; then cached 1 and 0 go.
  Request c = MakeRequest(Ids(25, 9));
  ASSERT_TRUE(blocks_.Allocate(c, 25));  // 7 blocks.
  EXPECT_EQ(c.block_ids, (Ids{4, 5, 6, 7, 2, 3, 1}));
  EXPECT_EQ(blocks_.num_cached_blocks(), 1);  // Block 1 was evicted; block 0 is still cached.
  Request d = MakeRequest({1, 2, 3, 4, 5, 6, 7, 8, 42});
  EXPECT_EQ(blocks_.FindCachedPrefix(d).block_ids, (Ids{0}));
  ExpectConsistent({&c});
}

TEST_F(BlockManagerTest, ForkSharesAndCopyOnWriteSeparates) {
  Request parent = MakeRequest({1, 2, 3, 4, 5, 6});  // |1 2 3 4|5 6 _ _
  ASSERT_TRUE(blocks_.Allocate(parent, 6));
  parent.num_computed_tokens = 6;
  Request child = parent;
  child.block_ids.clear();
  blocks_.Fork(parent, child);
  EXPECT_EQ(child.block_ids, (Ids{0, 1}));
  ExpectConsistent({&parent, &child});
  // Both now append at position 6, inside the shared partial block 1.
  ASSERT_TRUE(blocks_.NeedsCopy(child, 6));
  const BlockCopy copy = blocks_.CopyOnWrite(child, 6);
  EXPECT_EQ(copy.src_block, 1);
  EXPECT_EQ(copy.dst_block, 2);
  EXPECT_EQ(child.block_ids, (Ids{0, 2}));
  EXPECT_FALSE(blocks_.NeedsCopy(parent, 6));  // The parent is now the only holder of block 1.
  EXPECT_TRUE(blocks_.NeedsCopy(parent, 0));   // Block 0 is still shared (and full: never written).
  ExpectConsistent({&parent, &child});
  blocks_.Free(parent);
  blocks_.Free(child);
  ExpectConsistent({});
  EXPECT_EQ(blocks_.num_free_blocks(), 8);
}

TEST_F(BlockManagerTest, DisabledPrefixCachingNeverHits) {
  BlockManager plain(8, 4, /*enable_prefix_caching=*/false);
  Request a = MakeRequest({1, 2, 3, 4, 5});
  ASSERT_TRUE(plain.Allocate(a, 5));
  a.num_computed_tokens = 5;
  plain.CacheFullBlocks(a);
  Request b = MakeRequest({1, 2, 3, 4, 5});
  EXPECT_EQ(plain.FindCachedPrefix(b).num_tokens, 0);
  EXPECT_EQ(plain.num_cached_blocks(), 0);
}

}  // namespace
}  // namespace iquest
