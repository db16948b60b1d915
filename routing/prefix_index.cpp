#include "routing/prefix_index.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace infergate::routing {
namespace {

constexpr int kSlotShift = 32;
constexpr int kTagShift = 44;
constexpr uint64_t kSlotMask = 0xFFF;
constexpr size_t kAlign = 128;
constexpr size_t kMinBuckets = 64;
constexpr uint32_t kClaimShift = 1u << 31;  // moves a reclaimed slot's window past old stamps
// Ways examined for a victim in a full bucket. 2 leaves ~45 % of a full table holding dead
// entries under churn (the random-workload test), 4 ~15 %, 8 ~1 %.
constexpr size_t kSamples = 8;
constexpr size_t kPrefetchAhead = 16;  // buckets requested ahead of the one being read
// An entry is refreshed (given a new stamp) only once it is older than capacity / kRefreshSlack:
// recency is tracked to within that, each hot block holds at most kRefreshSlack stamps of its
// window (so a hot set H costs at most (kRefreshSlack - 1) * |H| of capacity), and a hot prefix
// stops costing every request, on every core, a locked write to a shared cache line.
constexpr uint32_t kRefreshSlack = 2;
constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeThreshold = size_t{4} << 20;  // tables from this size get huge pages

uint64_t tag_of(uint64_t hash) {
  return hash >> kTagShift;
}
uint64_t entry_of(uint64_t tag, uint32_t slot, uint32_t stamp) {
  return (tag << kTagShift) | (static_cast<uint64_t>(slot) << kSlotShift) | stamp;
}
// tag and slot together: the identity of an entry, bits 32..63.
uint64_t owner_of(uint64_t entry) {
  return entry >> kSlotShift;
}
uint32_t slot_of(uint64_t entry) {
  return static_cast<uint32_t>((entry >> kSlotShift) & kSlotMask);
}
uint32_t stamp_of(uint64_t entry) {
  return static_cast<uint32_t>(entry);
}

uint64_t load(const uint64_t* p) {
  return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(p)).load(std::memory_order_relaxed);
}
bool cas(uint64_t* p, uint64_t expected, uint64_t desired) {
  return std::atomic_ref<uint64_t>(*p).compare_exchange_strong(expected, desired,
                                                               std::memory_order_relaxed);
}

// An entry stamped `stamp` is live while 1 <= ins - stamp <= capacity (mod 2^32).
bool live(uint32_t ins, uint32_t capacity, uint32_t stamp) {
  return static_cast<uint32_t>(ins - stamp - 1) < capacity;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

// Registry cell of the i-th probe from a home position: slots are 1..kMaxEndpoints.
uint32_t wrap(uint32_t pos) {
  return (pos >= PrefixIndex::kMaxEndpoints ? pos - PrefixIndex::kMaxEndpoints : pos) + 1;
}

size_t registry_bytes() {
  return (PrefixIndex::kMaxEndpoints + 1) * 24;
}

// Per-thread scratch for match(): slot -> candidate position (kNoCandidate when absent), and
// the candidates' counters read once per call.
constexpr uint32_t kNoCandidate = std::numeric_limits<uint32_t>::max();
struct MatchScratch {
  MatchScratch() { candidate_of_slot.fill(kNoCandidate); }
  std::array<uint32_t, PrefixIndex::kMaxEndpoints + 1> candidate_of_slot;
};

}  // namespace

static_assert(sizeof(std::atomic<uint64_t>) == 8 && sizeof(std::atomic<uint32_t>) == 4);

size_t PrefixIndex::min_budget_bytes() {
  return registry_bytes() + kAlign + kMinBuckets * kBucketBytes;
}

PrefixIndex::PrefixIndex(size_t memory_budget_bytes) {
  static_assert(sizeof(Cell) <= 24, "registry_bytes() assumes 24-byte cells");
  if (memory_budget_bytes < min_budget_bytes())
    throw std::invalid_argument("prefix index budget below " + std::to_string(min_budget_bytes()) +
                                " bytes");
  const size_t table_budget = memory_budget_bytes - registry_bytes() - kAlign;
  buckets_ = std::min<size_t>(table_budget / kBucketBytes, size_t{1} << 32);  // 32 hash bits
  cells_ = std::make_unique<Cell[]>(kMaxEndpoints + 1);
#ifdef __linux__
  // Large tables: an anonymous mapping, 2 MiB aligned and advised for transparent huge pages.
  // Lookups touch one random bucket per block; with 4 KiB pages nearly each one is a TLB miss.
  // Untouched pages cost nothing, so the resident size grows with use up to the budget.
  if (buckets_ * kBucketBytes >= kHugeThreshold) {
    const size_t bytes = buckets_ * kBucketBytes / kPage * kPage;
    const size_t reserve = bytes + kHugePage;
    void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
    if (aligned > start) ::munmap(p, aligned - start);
    const uintptr_t tail = start + reserve - (aligned + bytes);
    if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
    ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // a hint; may fail
    raw_ = reinterpret_cast<void*>(aligned);
    raw_bytes_ = bytes;
    mapped_ = true;
    table_ = static_cast<uint64_t*>(raw_);
    buckets_ = bytes / kBucketBytes;
    memory_bytes_ = bytes + sizeof(Cell) * (kMaxEndpoints + 1);
    return;
  }
#endif
  // calloc: large blocks come from mmap as untouched zero pages, so the resident size grows
  // with use rather than with the budget.
  raw_bytes_ = buckets_ * kBucketBytes + kAlign;
  raw_ = std::calloc(1, raw_bytes_);
  if (raw_ == nullptr) throw std::bad_alloc();
  const auto addr = reinterpret_cast<uintptr_t>(raw_);
  table_ = reinterpret_cast<uint64_t*>((addr + kAlign - 1) & ~(uintptr_t{kAlign} - 1));
  memory_bytes_ = raw_bytes_ + sizeof(Cell) * (kMaxEndpoints + 1);
}

PrefixIndex::~PrefixIndex() {
#ifdef __linux__
  if (mapped_) {
    ::munmap(raw_, raw_bytes_);
    return;
  }
#endif
  std::free(raw_);
}

uint32_t PrefixIndex::home_of(uint64_t key) const {
  // 0-based position in [0, kMaxEndpoints), by multiply-shift (no division).
  return static_cast<uint32_t>((static_cast<__uint128_t>(mix(key)) * kMaxEndpoints) >> 64);
}

uint32_t PrefixIndex::find_slot(uint64_t key) const {
  if (key == 0 || key == kTombstone) return 0;
  const uint32_t home = home_of(key);
  for (uint32_t i = 0; i < kProbe; ++i) {
    const uint32_t slot = wrap(home + i);
    const uint64_t k = cells_[slot].key.load(std::memory_order_relaxed);
    if (k == key) return slot;
    // Cells never become empty again once used, and a key is only ever placed in the first
    // empty-or-freed cell of its window: nothing of ours lies beyond an empty cell.
    if (k == 0) return 0;
  }
  return 0;
}

void PrefixIndex::claim(uint32_t slot) {
  Cell& c = cells_[slot];
  c.ins.fetch_add(kClaimShift, std::memory_order_relaxed);
  c.capacity.store(0, std::memory_order_relaxed);
  c.referenced.store(1, std::memory_order_relaxed);
}

uint32_t PrefixIndex::slot_for(uint64_t key) {
  if (key == 0 || key == kTombstone) return 0;
  const uint32_t home = home_of(key);
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint32_t free_slot = 0;
    uint64_t free_key = 0;
    for (uint32_t i = 0; i < kProbe; ++i) {
      const uint32_t slot = wrap(home + i);
      const uint64_t k = cells_[slot].key.load(std::memory_order_relaxed);
      if (k == key) return slot;
      if (k == 0 || k == kTombstone) {
        if (free_slot == 0) {
          free_slot = slot;
          free_key = k;
        }
        if (k == 0) break;
      }
    }
    if (free_slot != 0) {
      if (cells_[free_slot].key.compare_exchange_strong(free_key, key, std::memory_order_relaxed)) {
        claim(free_slot);
        return free_slot;
      }
      continue;  // someone took it (maybe for this very key): look again
    }
    // Window full of live keys: second chance. A slot that had no dispatch since the last sweep
    // is recycled; the sweep clears the marks it passes.
    for (uint32_t i = 0; i < kProbe; ++i) {
      const uint32_t slot = wrap(home + i);
      Cell& c = cells_[slot];
      if (c.referenced.exchange(0, std::memory_order_relaxed) != 0) continue;
      uint64_t old = c.key.load(std::memory_order_relaxed);
      if (old == key) return slot;
      if (c.key.compare_exchange_strong(old, key, std::memory_order_relaxed)) {
        claim(slot);
        return slot;
      }
    }
    // Every slot of the window was marked; the marks are now cleared, so the next attempt
    // recycles the first one that stays idle.
  }
  return 0;
}

void PrefixIndex::forget(uint64_t key) {
  const uint32_t slot = find_slot(key);
  if (slot == 0) return;
  uint64_t expected = key;
  if (cells_[slot].key.compare_exchange_strong(expected, kTombstone, std::memory_order_relaxed))
    cells_[slot].capacity.store(0, std::memory_order_relaxed);
}

double PrefixIndex::age_fraction(uint64_t entry) const {
  const uint32_t slot = slot_of(entry);
  if (slot == 0) return 2.0;
  const Cell& c = cells_[slot];
  const uint32_t capacity = c.capacity.load(std::memory_order_relaxed);
  const uint32_t ins = c.ins.load(std::memory_order_relaxed);
  if (!live(ins, capacity, stamp_of(entry))) return 2.0;
  return static_cast<double>(static_cast<uint32_t>(ins - stamp_of(entry))) / capacity;
}

void PrefixIndex::match(std::span<const uint64_t> hashes, std::span<const uint32_t> slots,
                        std::span<uint32_t> out) const {
  std::fill(out.begin(), out.end(), 0u);
  if (hashes.empty() || slots.empty()) return;
  thread_local MatchScratch scratch;
  auto& cand = scratch.candidate_of_slot;
  // The candidates' counters, read once: an entry's liveness is judged against this instant.
  constexpr size_t kLocal = 256;
  std::array<uint32_t, kLocal> ins_local, cap_local;
  const size_t n = slots.size();
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = slots[i];
    if (s == 0 || s > kMaxEndpoints) continue;
    cand[s] = static_cast<uint32_t>(i);
    any = true;
    if (i < kLocal) {
      ins_local[i] = cells_[s].ins.load(std::memory_order_relaxed);
      cap_local[i] = cells_[s].capacity.load(std::memory_order_relaxed);
    }
  }
  if (any) {
    // The buckets are scattered over the table: keep many of their cache lines in flight
    // rather than waiting for each in turn.
    for (size_t b = 0; b < std::min(kPrefetchAhead, hashes.size()); ++b) prefetch(hashes[b]);
    for (size_t b = 0; b < hashes.size(); ++b) {
      if (b + kPrefetchAhead < hashes.size()) prefetch(hashes[b + kPrefetchAhead]);
      const uint64_t h = hashes[b];
      const uint64_t* bucket = bucket_ptr(bucket_of(h));
      const uint64_t tag = tag_of(h);
      bool extended = false;
      for (size_t w = 0; w < kWays; ++w) {
        const uint64_t e = load(bucket + w);
        if ((e >> kTagShift) != tag || e == 0) continue;
        const uint32_t s = slot_of(e);
        if (s == 0) continue;
        const uint32_t c = cand[s];
        if (c == kNoCandidate || out[c] != b) continue;  // not a candidate, or a gap before
        const uint32_t ins =
            c < kLocal ? ins_local[c] : cells_[s].ins.load(std::memory_order_relaxed);
        const uint32_t cap =
            c < kLocal ? cap_local[c] : cells_[s].capacity.load(std::memory_order_relaxed);
        if (!live(ins, cap, stamp_of(e))) continue;
        out[c] = static_cast<uint32_t>(b + 1);
        extended = true;
      }
      if (!extended) break;  // no candidate holds this block, so none holds a longer prefix
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = slots[i];
    if (s != 0 && s <= kMaxEndpoints) cand[s] = kNoCandidate;
  }
}

void PrefixIndex::insert(uint32_t slot, std::span<const uint64_t> hashes,
                         uint64_t capacity_blocks) {
  if (slot == 0 || slot > kMaxEndpoints || hashes.empty()) return;
  Cell& cell = cells_[slot];
  const uint32_t capacity =
      static_cast<uint32_t>(std::clamp<uint64_t>(capacity_blocks, 1, kMaxCapacity));
  if (cell.capacity.load(std::memory_order_relaxed) != capacity)
    cell.capacity.store(capacity, std::memory_order_relaxed);
  if (cell.referenced.load(std::memory_order_relaxed) == 0)
    cell.referenced.store(1, std::memory_order_relaxed);
  const size_t n = std::min<size_t>(hashes.size(), kMaxCapacity);
  // Stamps are handed out only to blocks actually written (new, or refreshed), as GIE's LRU
  // grows only by new hashes: re-dispatching a hot prompt must not age everything else out.
  // Concurrent inserts for one endpoint may hand out the same stamps; the window then holds a
  // few entries more than `capacity`, which is harmless.
  const uint32_t base = cell.ins.load(std::memory_order_relaxed);
  const uint32_t fresh = capacity / kRefreshSlack;
  uint32_t used = 0;

  // Tail first, so that block 0 gets the newest stamp: an endpoint's LRU drops a prompt's tail
  // before its head, as the engine's own prefix cache does, and what survives is a prefix.
  for (size_t i = 0; i < std::min(kPrefetchAhead, n); ++i) prefetch(hashes[n - 1 - i]);
  for (size_t b = n; b-- > 0;) {
    if (b >= kPrefetchAhead) prefetch(hashes[b - kPrefetchAhead]);
    const uint64_t h = hashes[b];
    uint64_t* bucket = bucket_ptr(bucket_of(h));
    const uint64_t desired = entry_of(tag_of(h), slot, base + used);
    const uint64_t owner = owner_of(desired);
    // Preference: our own entry for this block (refresh), an empty way, one of our own entries
    // that fell out of our window (our LRU evicting itself), else a victim below.
    int empty = -1, own_dead = -1;
    uint64_t own_dead_entry = 0;
    bool done = false;
    for (size_t w = 0; w < kWays; ++w) {
      const uint64_t e = load(bucket + w);
      if (e == 0) {
        if (empty < 0) empty = static_cast<int>(w);
        continue;
      }
      if (owner_of(e) == owner) {
        // Still in the newest 1/kRefreshSlack of the window: leave it (see kRefreshSlack).
        if (static_cast<uint32_t>(base - stamp_of(e) - 1) >= fresh) {
          cas(bucket + w, e, desired);
          ++used;
        }
        done = true;
        break;
      }
      if (own_dead < 0 && slot_of(e) == slot && !live(base, capacity, stamp_of(e))) {
        own_dead = static_cast<int>(w);
        own_dead_entry = e;
      }
    }
    if (done) continue;
    ++used;
    if (empty >= 0 && cas(bucket + empty, 0, desired)) continue;
    if (own_dead >= 0 && cas(bucket + own_dead, own_dead_entry, desired)) continue;
    // Evict: of kSamples consecutive ways from a hash-chosen start, the entry furthest through
    // its own endpoint's window (a dead one counts as past the end, and ends the search).
    const size_t start = (h >> 36) & (kWays - 1);
    size_t victim = start;
    uint64_t victim_entry = 0;
    double oldest = -1;
    for (size_t t = 0; t < kSamples; ++t) {
      const size_t w = (start + t) & (kWays - 1);
      const uint64_t e = load(bucket + w);
      const double age = age_fraction(e);
      if (age > oldest) {
        oldest = age;
        victim = w;
        victim_entry = e;
        if (age >= 1.0) break;
      }
    }
    cas(bucket + victim, victim_entry, desired);
  }
  if (used > 0) cell.ins.fetch_add(used, std::memory_order_relaxed);
}

size_t PrefixIndex::count_occupied() const {
  size_t n = 0;
  for (size_t i = 0; i < buckets_ * kWays; ++i)
    if (load(table_ + i) != 0) ++n;
  return n;
}

size_t PrefixIndex::count_live(uint32_t slot) const {
  if (slot == 0 || slot > kMaxEndpoints) return 0;
  const uint32_t ins = cells_[slot].ins.load(std::memory_order_relaxed);
  const uint32_t cap = cells_[slot].capacity.load(std::memory_order_relaxed);
  size_t n = 0;
  for (size_t i = 0; i < buckets_ * kWays; ++i) {
    const uint64_t e = load(table_ + i);
    if (e != 0 && slot_of(e) == slot && live(ins, cap, stamp_of(e))) ++n;
  }
  return n;
}

}  // namespace infergate::routing
