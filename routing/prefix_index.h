#pragma once
// Approximate prefix-cache index: which endpoints probably hold which prompt blocks in their KV
// cache (GIE's approx-prefix-cache indexer, redesigned to be shared by every worker thread
// without a lock and to never outgrow a fixed memory budget).
//
// Model (as GIE's): each endpoint has an LRU of block hashes with a capacity of its
// num_gpu_blocks; dispatching a request to an endpoint inserts (refreshes) all of the prompt's
// block hashes into that endpoint's LRU. A lookup returns, per endpoint, how many leading blocks
// of a prompt it holds.
//
// Design (docs/scheduling.md has the long version):
// - One table of 64-bit atomic words, allocated once, sized from the budget: buckets of 16
//   words (128 bytes, two cache lines). A block hash selects one bucket; every endpoint's entry
//   for that block lives in it, so a lookup reads one bucket per block.
// - A word packs [tag: 20 bits of the hash | endpoint slot: 12 bits | stamp: 32 bits]; 0 is
//   empty. The tag plus the bucket index give ~40+ bits of the hash.
// - Per endpoint slot, an atomic insertion counter `ins`. Each block written (new, or
//   refreshed) takes the next stamp; an entry is live while ins - stamp <= capacity: "among the
//   endpoint's last `capacity` writes", i.e. the LRU of GIE (recency = last dispatch) with no
//   list to maintain. An entry is refreshed only once older than half the window, so recency
//   is exact to within half a window and a hot block costs at most two stamps of it. Dead
//   entries are dead weight that inserts overwrite first.
// - An insert takes, in order: its own entry for the block (refresh), an empty way, one of its
//   own dead entries, else of 8 ways the entry furthest through its own endpoint's window (a
//   dead one first): approximate LRU, normalised per endpoint.
// - Endpoint keys (caller ids) map to 4095 slots through a small lock-free open-addressed
//   registry. Claiming a slot shifts its counter by 2^31, which expires every entry of a
//   previous owner. A full registry window recycles a slot not used since the last sweep
//   (second chance); forget() frees one at once.
// All accesses are relaxed atomics: concurrent inserts may lose an update or briefly pair a
// block with the wrong endpoint. The index is a heuristic input; it is never wrong in a way that
// breaks a request, only in a way that costs a cache miss.
//
// Memory: memory_bytes() is everything this object allocates, fixed at construction and <= the
// budget. No allocation after construction (match() uses a fixed per-thread scratch of 16 KiB).
// On Linux a table of 4 MiB or more is an anonymous mapping advised for transparent huge pages;
// pages are resident only once touched.
//
// Thread-safety: every method may be called concurrently from any thread.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace infergate::routing {

class PrefixIndex {
 public:
  static constexpr uint32_t kMaxEndpoints = 4095;  // live endpoint slots (slot ids 1..4095)
  static constexpr size_t kWays = 16;              // entries per bucket
  static constexpr size_t kBucketBytes = kWays * sizeof(uint64_t);
  static constexpr uint64_t kMaxCapacity = 1ull << 30;  // per endpoint, in blocks

  // Throws std::invalid_argument when the budget cannot hold the registry and 64 buckets
  // (min_budget_bytes()).
  explicit PrefixIndex(size_t memory_budget_bytes);
  ~PrefixIndex();
  PrefixIndex(const PrefixIndex&) = delete;
  PrefixIndex& operator=(const PrefixIndex&) = delete;

  static size_t min_budget_bytes();

  // Slot of an endpoint key: find_slot() never claims (0 when absent); slot_for() claims one
  // for a new key. 0 also for the reserved keys 0 and UINT64_MAX, and when no slot is free.
  uint32_t find_slot(uint64_t key) const;
  uint32_t slot_for(uint64_t key);
  // The endpoint is gone: drop its slot and, logically, all of its entries.
  void forget(uint64_t key);

  // out[i] = number of leading blocks of `hashes` held by slots[i] (0 for slot 0).
  // out.size() must equal slots.size().
  void match(std::span<const uint64_t> hashes, std::span<const uint32_t> slots,
             std::span<uint32_t> out) const;

  // Records that `slot` now holds these blocks (in prompt order: block 0 is kept longest).
  // capacity_blocks: the endpoint's LRU size (its num_gpu_blocks), clamped to [1, 2^30].
  void insert(uint32_t slot, std::span<const uint64_t> hashes, uint64_t capacity_blocks);

  size_t memory_bytes() const { return memory_bytes_; }
  size_t table_entries() const { return buckets_ * kWays; }
  size_t buckets() const { return buckets_; }
  // Diagnostics (full scans; tests and /debug only).
  size_t count_occupied() const;
  size_t count_live(uint32_t slot) const;

 private:
  struct Cell {
    std::atomic<uint64_t> key{0};       // 0 empty (never used), kTombstone freed
    std::atomic<uint32_t> ins{0};       // insertion counter (stamps)
    std::atomic<uint32_t> capacity{0};  // LRU size; 0: every entry dead
    std::atomic<uint32_t> referenced{0};
  };

  static constexpr uint64_t kTombstone = ~0ull;
  static constexpr uint32_t kProbe = 16;

  size_t bucket_of(uint64_t hash) const {
    return static_cast<size_t>((static_cast<uint64_t>(static_cast<uint32_t>(hash)) * buckets_) >>
                               32);
  }
  uint64_t* bucket_ptr(size_t b) const { return table_ + b * kWays; }
  void prefetch(uint64_t hash) const {
    const uint64_t* p = bucket_ptr(bucket_of(hash));
    __builtin_prefetch(p);
    __builtin_prefetch(p + kWays / 2);  // a bucket is two cache lines
  }
  uint32_t home_of(uint64_t key) const;
  void claim(uint32_t slot);
  // How far through its endpoint's window an entry is: < 1 live, >= 1 dead (or no owner).
  double age_fraction(uint64_t entry) const;

  std::unique_ptr<Cell[]> cells_;  // kMaxEndpoints + 1, index 0 unused
  void* raw_ = nullptr;            // the block holding the table (calloc or mmap)
  size_t raw_bytes_ = 0;
  bool mapped_ = false;
  uint64_t* table_ = nullptr;  // 128-byte aligned, buckets_ * kWays words
  size_t buckets_ = 0;
  size_t memory_bytes_ = 0;
};

}  // namespace infergate::routing
