#pragma once
// The KV-cache block pool of a simulated vLLM V1 engine (vllm/v1/core/block_pool.py): a fixed
// number of blocks, each referenced by the running requests that hold it. With prefix caching, a
// full block keeps the hash of its content (block_hasher.h) after its requests have released it,
// so a later request with the same prefix can take it back instead of recomputing it. Unreferenced
// blocks sit in one LRU free queue whether or not they hold cached content; allocating a block
// takes the least recently freed one and evicts its content. Requests release their blocks tail
// first, so the end of a prompt is evicted before its shared beginning, as in vLLM.
//
// Sans-I/O, not thread-safe. Block ids are 0..num_blocks-1.

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace infergate::sim {

class KvCache {
 public:
  using BlockId = int32_t;

  KvCache(int64_t num_blocks, bool enable_caching);

  int64_t num_blocks() const { return static_cast<int64_t>(ref_.size()); }
  // Unreferenced blocks, cached or empty: what an allocation may take.
  int64_t num_free() const { return free_count_; }
  // Referenced blocks / all blocks: vllm:kv_cache_usage_perc (cached free blocks count as free).
  double usage() const;
  int64_t num_cached() const { return static_cast<int64_t>(by_hash_.size()); }
  uint64_t evictions() const { return evictions_; }
  bool caching() const { return caching_; }

  // Length of the longest prefix of `keys` whose blocks are all cached, at most `limit`; their ids
  // are appended to *out. Always 0 without prefix caching.
  int64_t lookup(std::span<const uint64_t> keys, int64_t limit, std::vector<BlockId>* out) const;
  bool is_free(BlockId block) const { return ref_[static_cast<size_t>(block)] == 0; }
  // Takes one more reference; a block that was free leaves the free queue (its content stays).
  void acquire(BlockId block);
  // Takes the least recently freed block and forgets its content. nullopt when none is free.
  std::optional<BlockId> allocate();
  // Marks a full block's content. The first block with a given hash is the one lookups find.
  void set_hash(BlockId block, uint64_t key);
  // Drops one reference of each block, last block first; blocks reaching zero join the tail of
  // the free queue with their content.
  void release(std::span<const BlockId> blocks);
  // vLLM's reset_prefix_cache: forgets all cached content. Only when no block is referenced; false
  // otherwise.
  bool reset();

 private:
  void unlink(BlockId block);
  void push_back(BlockId block);
  void forget_hash(BlockId block);

  bool caching_;
  std::vector<int32_t> ref_;
  std::vector<uint64_t> hash_;
  std::vector<bool> hashed_;
  // Intrusive doubly-linked free queue; index num_blocks is the sentinel.
  std::vector<BlockId> prev_;
  std::vector<BlockId> next_;
  int64_t free_count_ = 0;
  std::unordered_map<uint64_t, BlockId> by_hash_;
  uint64_t evictions_ = 0;
};

}  // namespace infergate::sim
