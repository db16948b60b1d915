#include "sim/kv_cache.h"

#include <algorithm>

namespace infergate::sim {

KvCache::KvCache(int64_t num_blocks, bool enable_caching)
    : caching_(enable_caching),
      ref_(static_cast<size_t>(num_blocks), 0),
      hash_(static_cast<size_t>(num_blocks), 0),
      hashed_(static_cast<size_t>(num_blocks), false),
      prev_(static_cast<size_t>(num_blocks) + 1),
      next_(static_cast<size_t>(num_blocks) + 1) {
  const auto sentinel = static_cast<BlockId>(num_blocks);
  prev_[static_cast<size_t>(sentinel)] = sentinel;
  next_[static_cast<size_t>(sentinel)] = sentinel;
  for (BlockId b = 0; b < sentinel; ++b) push_back(b);
}

double KvCache::usage() const {
  if (ref_.empty()) return 0.0;
  return static_cast<double>(num_blocks() - free_count_) / static_cast<double>(num_blocks());
}

int64_t KvCache::lookup(std::span<const uint64_t> keys, int64_t limit,
                        std::vector<BlockId>* out) const {
  if (!caching_) return 0;
  int64_t found = 0;
  for (const uint64_t key : keys) {
    if (found >= limit) break;
    const auto it = by_hash_.find(key);
    if (it == by_hash_.end()) break;
    out->push_back(it->second);
    ++found;
  }
  return found;
}

void KvCache::acquire(BlockId block) {
  if (ref_[static_cast<size_t>(block)]++ == 0) unlink(block);
}

std::optional<KvCache::BlockId> KvCache::allocate() {
  const auto sentinel = static_cast<BlockId>(ref_.size());
  const BlockId block = next_[static_cast<size_t>(sentinel)];
  if (block == sentinel) return std::nullopt;
  unlink(block);
  if (hashed_[static_cast<size_t>(block)]) {
    forget_hash(block);
    ++evictions_;
  }
  ref_[static_cast<size_t>(block)] = 1;
  return block;
}

void KvCache::set_hash(BlockId block, uint64_t key) {
  if (!caching_ || hashed_[static_cast<size_t>(block)]) return;
  hashed_[static_cast<size_t>(block)] = true;
  hash_[static_cast<size_t>(block)] = key;
  by_hash_.try_emplace(key, block);
}

void KvCache::release(std::span<const BlockId> blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    if (--ref_[static_cast<size_t>(*it)] == 0) push_back(*it);
  }
}

bool KvCache::reset() {
  if (free_count_ != num_blocks()) return false;
  by_hash_.clear();
  std::fill(hashed_.begin(), hashed_.end(), false);
  return true;
}

void KvCache::unlink(BlockId block) {
  const auto b = static_cast<size_t>(block);
  next_[static_cast<size_t>(prev_[b])] = next_[b];
  prev_[static_cast<size_t>(next_[b])] = prev_[b];
  --free_count_;
}

void KvCache::push_back(BlockId block) {
  const auto sentinel = static_cast<BlockId>(ref_.size());
  const auto b = static_cast<size_t>(block);
  const BlockId last = prev_[static_cast<size_t>(sentinel)];
  prev_[b] = last;
  next_[b] = sentinel;
  next_[static_cast<size_t>(last)] = block;
  prev_[static_cast<size_t>(sentinel)] = block;
  ++free_count_;
}

void KvCache::forget_hash(BlockId block) {
  const auto b = static_cast<size_t>(block);
  const auto it = by_hash_.find(hash_[b]);
  if (it != by_hash_.end() && it->second == block) by_hash_.erase(it);
  hashed_[b] = false;
}

}  // namespace infergate::sim
