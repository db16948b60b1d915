#include "sim/kv_cache.h"
#include "sim/block_hasher.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace infergate::sim {

TEST_CASE("block hasher: blocks are named by their whole prefix") {
  BlockHasher a(4);
  BlockHasher b(4);
  a.add_text(std::string(64, 'x'));  // 16 tokens: 4 blocks
  b.add_text(std::string(32, 'x') + std::string(32, 'y'));
  REQUIRE(a.block_hashes().size() == 4);
  REQUIRE(b.block_hashes().size() == 4);
  CHECK(a.tokens() == 16);
  // Same tokens up to the end of block 1: same names; from there on they differ, even though
  // blocks 0 and 1 of `a` hold the same tokens as each other (chained).
  CHECK(a.block_hashes()[0] == b.block_hashes()[0]);
  CHECK(a.block_hashes()[1] == b.block_hashes()[1]);
  CHECK(a.block_hashes()[2] != b.block_hashes()[2]);
  CHECK(a.block_hashes()[0] != a.block_hashes()[1]);
  // A partial block has no name yet.
  BlockHasher c(4);
  c.add_text("abcdefghij");  // 3 tokens
  CHECK(c.tokens() == 3);
  CHECK(c.block_hashes().empty());
  CHECK(count_text_tokens("abcdefghij") == 3);
}

TEST_CASE("kv cache: allocate, cache, look up, release tail first, evict LRU") {
  KvCache kv(4, true);
  CHECK(kv.num_free() == 4);
  std::vector<KvCache::BlockId> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(*kv.allocate());
  CHECK(kv.num_free() == 1);
  CHECK(kv.usage() == doctest::Approx(0.75));
  kv.set_hash(blocks[0], 100);
  kv.set_hash(blocks[1], 101);
  kv.set_hash(blocks[2], 102);

  std::vector<KvCache::BlockId> hits;
  const std::vector<uint64_t> keys = {100, 101, 999, 102};
  CHECK(kv.lookup(keys, 10, &hits) == 2);  // stops at the first miss
  CHECK(hits == std::vector<KvCache::BlockId>{blocks[0], blocks[1]});

  kv.release(blocks);  // free, content kept
  CHECK(kv.num_free() == 4);
  CHECK(kv.usage() == 0.0);
  CHECK(kv.num_cached() == 3);

  // The free queue: the never-used block, then the released ones tail first.
  const KvCache::BlockId fresh = *kv.allocate();
  CHECK(kv.num_cached() == 3);
  const KvCache::BlockId evicted = *kv.allocate();
  CHECK(fresh != blocks[2]);
  CHECK(evicted == blocks[2]);
  CHECK(kv.num_cached() == 2);
  CHECK(kv.evictions() == 1);

  // Taking a cached free block back keeps its content and removes it from the free queue.
  hits.clear();
  CHECK(kv.lookup(keys, 2, &hits) == 2);
  kv.acquire(hits[0]);
  CHECK_FALSE(kv.is_free(hits[0]));
  CHECK(kv.num_free() == 1);
  CHECK_FALSE(kv.reset());  // blocks in use
  kv.release(std::vector<KvCache::BlockId>{hits[0], fresh, evicted});
  CHECK(kv.reset());
  CHECK(kv.num_cached() == 0);
}

TEST_CASE("kv cache: without caching nothing is ever found") {
  KvCache kv(2, false);
  const KvCache::BlockId b = *kv.allocate();
  kv.set_hash(b, 7);
  std::vector<KvCache::BlockId> hits;
  const std::vector<uint64_t> keys = {7};
  CHECK(kv.lookup(keys, 1, &hits) == 0);
  *kv.allocate();
  CHECK_FALSE(kv.allocate().has_value());
}

}  // namespace infergate::sim
