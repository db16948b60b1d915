// This file replaces the global operator new/delete (malloc/free) to count allocations; once
// inlined, GCC cannot see that the two replacements pair up.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "routing/prefix_index.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "routing/prefix_hasher.h"
#include "routing/rng.h"
#include "routing_test_util.h"

using infergate::routing::PrefixHasher;
using infergate::routing::PrefixIndex;
using infergate::routing::Rng;
using infergate::routing::test::make_prompt;

// Counts heap allocations made by the current thread while `counting` is set: the index must
// not allocate after construction.
namespace {
thread_local bool counting = false;
thread_local size_t allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (counting) ++allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

std::vector<uint64_t> hashes_of(const std::string& prompt, const char* model = "m") {
  std::vector<uint64_t> h;
  PrefixHasher::hash(model, "", "", prompt, 64, 256, h);
  return h;
}

std::vector<uint32_t> match(const PrefixIndex& index, const std::vector<uint64_t>& h,
                            const std::vector<uint32_t>& slots) {
  std::vector<uint32_t> out(slots.size());
  index.match(h, slots, out);
  return out;
}

}  // namespace

TEST_CASE("prefix index: an endpoint holds the prefixes dispatched to it") {
  PrefixIndex index(1u << 20);
  const uint32_t a = index.slot_for(11), b = index.slot_for(22);
  REQUIRE(a != 0);
  REQUIRE(b != 0);
  CHECK(a != b);
  CHECK(index.find_slot(11) == a);
  CHECK(index.slot_for(11) == a);
  CHECK(index.find_slot(33) == 0);
  CHECK(index.slot_for(0) == 0);
  CHECK(index.slot_for(~0ull) == 0);

  const auto p = hashes_of(make_prompt(1024, 1, 512));
  const auto q = hashes_of(make_prompt(1024, 2, 512));  // shares 8 of 16 blocks
  index.insert(a, p, 1000);
  CHECK(match(index, p, {a, b}) == std::vector<uint32_t>{16, 0});
  CHECK(match(index, q, {a, b}) == std::vector<uint32_t>{8, 0});
  index.insert(b, q, 1000);
  CHECK(match(index, q, {b, a, 0}) == std::vector<uint32_t>{16, 8, 0});
  // Another model's hashes never match.
  CHECK(match(index, hashes_of(make_prompt(1024, 1, 512), "other"), {a, b}) ==
        std::vector<uint32_t>{0, 0});
}

TEST_CASE("prefix index: only a contiguous prefix counts") {
  PrefixIndex index(1u << 20);
  const uint32_t a = index.slot_for(1);
  const auto p = hashes_of(make_prompt(640, 1));
  REQUIRE(p.size() == 10);
  index.insert(a, std::span(p).subspan(0, 4), 100);
  index.insert(a, std::span(p).subspan(6, 4), 100);
  CHECK(match(index, p, {a}) == std::vector<uint32_t>{4});
}

TEST_CASE("prefix index: per-endpoint LRU of num_gpu_blocks entries, head blocks kept longest") {
  PrefixIndex index(1u << 20);
  const uint32_t a = index.slot_for(1);
  std::vector<std::vector<uint64_t>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(hashes_of(make_prompt(1024, 10 + i)));
  for (const auto& p : prompts) index.insert(a, p, 32);
  CHECK(index.count_live(a) == 32);
  CHECK(match(index, prompts[0], {a})[0] == 0);
  CHECK(match(index, prompts[1], {a})[0] == 0);
  CHECK(match(index, prompts[2], {a})[0] == 16);
  CHECK(match(index, prompts[3], {a})[0] == 16);
  index.insert(a, prompts[0], 32);  // used again: now the most recent
  CHECK(match(index, prompts[0], {a})[0] == 16);
  CHECK(match(index, prompts[2], {a})[0] == 0);
  CHECK(index.count_live(a) == 32);

  // Dispatching the same prompt again and again does not push other prompts out: like GIE's
  // LRU, the window counts distinct blocks, not dispatches.
  const uint32_t c = index.slot_for(3);
  index.insert(c, prompts[0], 40);
  for (int i = 0; i < 100; ++i) index.insert(c, prompts[1], 40);
  CHECK(match(index, prompts[0], {c})[0] == 16);
  CHECK(match(index, prompts[1], {c})[0] == 16);
  index.insert(c, prompts[2], 40);  // 48 distinct blocks > 40: the oldest (prompt 0's tail) go
  CHECK(match(index, prompts[0], {c})[0] == 8);
  CHECK(index.count_live(c) == 40);

  // A prompt longer than the LRU keeps its first blocks, so what survives is a usable prefix.
  const uint32_t b = index.slot_for(2);
  const auto longp = hashes_of(make_prompt(1024, 99));
  index.insert(b, longp, 10);
  CHECK(match(index, longp, {b})[0] == 10);
}

TEST_CASE("prefix index: forgetting an endpoint drops its entries; a new owner starts empty") {
  PrefixIndex index(1u << 20);
  const uint32_t a = index.slot_for(5);
  const auto p = hashes_of(make_prompt(1024, 1));
  index.insert(a, p, 1000);
  index.forget(5);
  CHECK(index.find_slot(5) == 0);
  CHECK(match(index, p, {a})[0] == 0);
  const uint32_t again = index.slot_for(5);
  REQUIRE(again != 0);
  CHECK(match(index, p, {again})[0] == 0);
  index.insert(again, p, 1000);
  CHECK(match(index, p, {again})[0] == 16);
}

TEST_CASE("prefix index: more endpoints than slots recycles idle ones") {
  PrefixIndex index(1u << 20);
  std::set<uint32_t> slots;
  for (uint64_t key = 1; key <= 6000; ++key) {
    const uint32_t s = index.slot_for(key);
    CHECK(s != 0);
    CHECK(s <= PrefixIndex::kMaxEndpoints);
    slots.insert(s);
  }
  CHECK(slots.size() > 3500);
  // A recycled slot's old entries are gone for the new owner.
  const uint32_t s = index.find_slot(6000);
  REQUIRE(s != 0);
  CHECK(index.count_live(s) == 0);
}

TEST_CASE("prefix index: memory is fixed at construction and within the budget") {
  for (size_t budget : {PrefixIndex::min_budget_bytes(), size_t{1} << 20, (size_t{4} << 20) + 123,
                        size_t{64} << 20}) {
    PrefixIndex index(budget);
    INFO("budget " << budget);
    CHECK(index.memory_bytes() <= budget);
    CHECK(index.memory_bytes() + 8192 > budget);  // uses nearly all of it
    CHECK(index.table_entries() >= 64 * PrefixIndex::kWays);
  }
  CHECK_THROWS_AS(PrefixIndex(PrefixIndex::min_budget_bytes() - 1), std::invalid_argument);
}

TEST_CASE("prefix index: a random workload never exceeds the budget nor any endpoint's LRU") {
  constexpr size_t kBudget = 1u << 20;  // small on purpose: the table is the binding limit
  PrefixIndex index(kBudget);
  const size_t bytes_at_start = index.memory_bytes();
  Rng rng(42);

  constexpr int kEndpoints = 300;
  std::vector<uint64_t> capacity(kEndpoints);
  for (auto& c : capacity) c = 50 + rng.below(20000);
  // Conversations: 40 system prompts x random continuations, lengths up to 16 KiB.
  std::vector<std::vector<uint64_t>> prompts;
  for (int i = 0; i < 1500; ++i) {
    const size_t len = rng.below(16384);
    const std::string p = make_prompt(len, 1000 + i, std::min<size_t>(len, rng.below(4096)));
    prompts.push_back(hashes_of(p, i % 3 ? "m" : "n"));
  }
  std::vector<uint32_t> slots(64), out(64);

  counting = true;
  allocations = 0;
  for (int op = 0; op < 60000; ++op) {
    const auto& h = prompts[rng.below(prompts.size())];
    const uint64_t ep = rng.below(kEndpoints);
    if (rng.below(3) == 0) {
      const size_t n = 1 + rng.below(64);
      for (size_t i = 0; i < n; ++i) slots[i] = index.find_slot(1 + rng.below(kEndpoints));
      index.match(h, std::span(slots).first(n), std::span(out).first(n));
      for (size_t i = 0; i < n; ++i) CHECK_LE(out[i], h.size());
    } else {
      index.insert(index.slot_for(1 + ep), h, capacity[ep]);
    }
    if (op % 20000 == 19999) index.forget(1 + rng.below(kEndpoints));
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(index.memory_bytes() == bytes_at_start);
  CHECK(index.memory_bytes() <= kBudget);
  CHECK(index.count_occupied() <= index.table_entries());
  size_t live = 0;
  for (int ep = 0; ep < kEndpoints; ++ep) {
    const uint32_t s = index.find_slot(1 + ep);
    if (s == 0) continue;
    const size_t n = index.count_live(s);
    CHECK(n <= capacity[ep]);
    live += n;
  }
  CHECK(live <= index.table_entries());
  CHECK(live > index.table_entries() * 9 / 10);  // and it is used, not full of dead entries
}

TEST_CASE("prefix index: concurrent inserts and lookups keep the bounds (no lock)") {
  PrefixIndex index(1u << 20);
  std::vector<std::vector<uint64_t>> prompts;
  for (int i = 0; i < 200; ++i) prompts.push_back(hashes_of(make_prompt(4096, 7, i * 16)));
  std::atomic<uint64_t> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Rng rng(100 + t);
      std::vector<uint32_t> slots(8), out(8);
      for (int op = 0; op < 20000; ++op) {
        const auto& h = prompts[rng.below(prompts.size())];
        if (op % 2) {
          index.insert(index.slot_for(1 + rng.below(16)), h, 5000);
        } else {
          for (auto& s : slots) s = index.find_slot(1 + rng.below(16));
          index.match(h, slots, out);
          for (auto o : out) hits += o;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(hits.load() > 0);
  CHECK(index.count_occupied() <= index.table_entries());
  for (uint64_t k = 1; k <= 16; ++k) {
    const uint32_t s = index.find_slot(k);
    REQUIRE(s != 0);
    CHECK(index.count_live(s) <= 5000 + 4 * 64);  // racing refreshes may duplicate a few
  }
}
