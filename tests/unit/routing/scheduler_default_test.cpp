// The `default` profile (ours): filters, scorers, in-flight correction, prefix and LoRA affinity.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "routing/scheduler.h"
#include "routing_test_util.h"

using namespace infergate::routing;
using infergate::routing::test::Fleet;
using infergate::routing::test::make_prompt;

namespace {

std::shared_ptr<PrefixIndex> small_index() {
  return std::make_shared<PrefixIndex>(4u << 20);
}

Scheduler make(Profile p, std::shared_ptr<PrefixIndex> index = nullptr) {
  return Scheduler(SchedulerConfig::defaults_for(p), std::move(index));
}

Decision decide(const Scheduler& s, Fleet& f, const RequestFeatures& r, Rng& rng,
                DecisionTrace* trace = nullptr) {
  SchedulingState state;
  return s.schedule(f.views(), r, state, rng, trace);
}

// Schedules and dispatches `r` (prefix index updated) without touching the since-scrape
// counters: as if a scrape happened between requests and showed the same figures.
size_t dispatch(const Scheduler& s, Fleet& f, const RequestFeatures& r, Rng& rng) {
  SchedulingState state;
  const Decision d = s.schedule(f.views(), r, state, rng);
  REQUIRE(d.picked());
  s.record_dispatch(f.view(d.index), r, state);
  return d.index;
}

// Same, but within one scrape interval: the chosen endpoint's since-scrape counters grow.
size_t dispatch_in_burst(const Scheduler& s, Fleet& f, const RequestFeatures& r, Rng& rng) {
  const size_t i = dispatch(s, f, r, rng);
  f.view(i).dispatched_since_scrape += 1;
  f.view(i).prompt_bytes_since_scrape += static_cast<int64_t>(r.prompt.size());
  f.view(i).in_flight += 1;
  return i;
}

}  // namespace

TEST_CASE("default: unready endpoints are never picked; none ready is no_endpoint") {
  Fleet f;
  f.add(0, 0.1);
  f.add(0, 0.1);
  f.view(0).ready = false;
  auto s = make(Profile::kDefault);
  Rng rng(1);
  for (int i = 0; i < 50; ++i) CHECK(decide(s, f, {}, rng).index == 1u);
  f.view(1).ready = false;
  const Decision d = decide(s, f, {}, rng);
  CHECK(d.status == DecisionStatus::kNoEndpoint);
  CHECK(d.reason == DecisionReason::kNoReadyEndpoint);
  Fleet empty;
  CHECK(decide(s, empty, {}, rng).status == DecisionStatus::kNoEndpoint);
}

TEST_CASE("default: saturated endpoints are dropped unless all are") {
  Fleet f;
  f.add(6, 0.1);   // waiting >= 5
  f.add(1, 0.2);   // fine
  f.add(0, 0.85);  // kv >= 0.8
  auto s = make(Profile::kDefault);
  Rng rng(2);
  DecisionTrace trace;
  const Decision d = decide(s, f, {}, rng, &trace);
  CHECK(d.index == 1u);
  CHECK(d.reason == DecisionReason::kSingleCandidate);
  CHECK_FALSE(d.saturated_fallback);
  CHECK(trace.candidates[0].filtered == FilterReason::kSaturatedQueue);
  CHECK(trace.candidates[1].filtered == FilterReason::kNone);
  CHECK(trace.candidates[2].filtered == FilterReason::kSaturatedKvCache);

  SUBCASE("all saturated: every one is scored, the least loaded wins") {
    f.metrics(1).waiting = 9;
    f.metrics(1).kv_cache_usage = 0.1;
    f.metrics(2).waiting = 5;
    f.metrics(2).kv_cache_usage = 0.9;
    // queue: 0.8, 0.2, 1.0 (span 5); kv: 0.9, 0.9, 0.1 -> totals 3.4+1, 2.2+1, 2.2+1.
    for (int i = 0; i < 20; ++i) {
      const Decision all = decide(s, f, {}, rng, &trace);
      CHECK(all.index == 0u);
      CHECK(all.saturated_fallback);
      CHECK(trace.candidates[1].filtered == FilterReason::kNone);
    }
    CHECK(trace.candidates[0].total == doctest::Approx(4.4));
    CHECK(trace.candidates[1].total == doctest::Approx(3.2));
  }
}

TEST_CASE("default: stale or missing metrics drop an endpoint unless all are stale") {
  Fleet f;
  f.add(2, 0.3);
  f.add(0, 0.0);
  f.add(0, 0.0);
  f.view(1).metrics_age = std::chrono::milliseconds(201);
  f.view(2).metrics = nullptr;
  auto s = make(Profile::kDefault);
  Rng rng(3);
  DecisionTrace trace;
  CHECK(decide(s, f, {}, rng, &trace).index == 0u);
  CHECK(trace.candidates[1].filtered == FilterReason::kStaleMetrics);
  CHECK(trace.candidates[2].filtered == FilterReason::kStaleMetrics);
  f.view(1).metrics_age = std::chrono::milliseconds(200);  // not older than the threshold
  CHECK(decide(s, f, {}, rng).index == 1u);
  f.view(0).metrics_age = f.view(1).metrics_age = std::chrono::seconds(5);
  const Decision d = decide(s, f, {}, rng);
  CHECK(d.picked());
  CHECK(d.saturated_fallback);
}

// GIE's hermetic EPP scenarios (test/integration/epp), same pods, same expected winner.
TEST_CASE("default: GIE scenario - select lower queue and kv cache, no active lora") {
  Fleet f;
  f.add(3, 0.2);
  f.add(0, 0.1);
  f.add(10, 0.2);
  auto s = make(Profile::kDefault);
  Rng rng(4);
  RequestFeatures r;
  r.model = "my-model-target";
  for (int i = 0; i < 20; ++i) {
    const Decision d = decide(s, f, r, rng);
    CHECK(d.index == 1u);
    CHECK(d.reason == DecisionReason::kLeastQueue);
  }
}

TEST_CASE("default: GIE scenario - select active lora, low queue") {
  Fleet f;
  f.add(0, 0.2, {"foo", "bar"});
  f.add(0, 0.1, {"foo", "sql-lora-1fdg2"});
  f.add(10, 0.2, {"foo", "bar"});
  auto s = make(Profile::kDefault);
  Rng rng(5);
  RequestFeatures r;
  r.model = "sql-lora-1fdg2";
  for (int i = 0; i < 20; ++i) {
    const Decision d = decide(s, f, r, rng);
    CHECK(d.index == 1u);
    CHECK(d.reason == DecisionReason::kLoraAffinity);
  }
}

TEST_CASE("default: GIE scenario - the endpoint with the adapter active wins despite higher kv") {
  Fleet f;
  f.add(10, 0.2, {"foo", "bar"});
  f.add(10, 0.4, {"foo", "sql-lora-1fdg2"});
  f.add(10, 0.3, {"foo"});
  auto s = make(Profile::kDefault);
  Rng rng(6);
  RequestFeatures r;
  r.model = "sql-lora-1fdg2";
  r.priority = 1;
  for (int i = 0; i < 20; ++i) {
    const Decision d = decide(s, f, r, rng);
    CHECK(d.index == 1u);
    CHECK(d.saturated_fallback);  // all queues above 5: scored anyway, never refused
  }
  // Also when the adapter is only waiting there and the others have no free slot.
  f.metrics(1).running_adapters = {"foo"};
  f.metrics(1).waiting_adapters = {"sql-lora-1fdg2"};
  f.metrics(2).running_adapters = {"foo", "baz"};
  for (auto i : {0, 1, 2}) f.metrics(i).max_lora = 2;
  CHECK(decide(s, f, r, rng).index == 1u);
}

TEST_CASE("default: GIE scenario - don't shed requests by default (all saturated)") {
  Fleet f;
  f.add(6, 0.2, {"foo", "bar", "sql-lora-1fdg2"});
  f.add(0, 0.85, {"foo"});
  f.add(10, 0.9, {"foo"});
  auto s = make(Profile::kDefault);
  Rng rng(7);
  RequestFeatures r;
  r.model = "sql-lora-1fdg2";
  r.priority = -1;  // scheduling never sheds; admission (SaturationDetector) decides that
  const Decision d = decide(s, f, r, rng);
  CHECK(d.picked());
  CHECK(d.index == 0u);
}

TEST_CASE("default: a base-model request ignores LoRA slots; a cold adapter prefers a free slot") {
  Fleet f;
  f.add(0, 0.1, {"a1", "a2"}, {}, 2);  // slots full
  f.add(0, 0.1, {}, {}, 2);            // free slots
  auto s = make(Profile::kDefault);
  Rng rng(8);
  RequestFeatures base;
  base.model = "llama";
  std::map<size_t, int> counts;
  for (int i = 0; i < 400; ++i) ++counts[decide(s, f, base, rng).index];
  CHECK(counts[0] > 120);  // a fair coin, not pushed off the busy-slot pod
  CHECK(counts[1] > 120);

  RequestFeatures cold = base;
  cold.model = "a3";
  cold.lora = LoraHint::kAdapter;
  for (int i = 0; i < 20; ++i) CHECK(decide(s, f, cold, rng).index == 1u);

  // GIE's scorer (the hermetic test's weights 1/1/1/1) scores the base model on free slots.
  SchedulerConfig gie = SchedulerConfig::defaults_for(Profile::kGieDefault);
  gie.weights = {1, 1, 1, 1, 0};
  Scheduler g(gie);
  for (int i = 0; i < 20; ++i) CHECK(decide(g, f, base, rng).index == 1u);
  base.lora = LoraHint::kBaseModel;  // GIE profiles do not read the hint
  CHECK(decide(g, f, base, rng).index == 1u);
}

TEST_CASE("default: prefix affinity sticks a repeated prompt to one pod") {
  Fleet f;
  for (int i = 0; i < 8; ++i) f.add(1, 0.3);
  auto s = make(Profile::kDefault, small_index());
  Rng rng(9);
  const std::string prompt = make_prompt(4096, 1, 3072);
  RequestFeatures r;
  r.model = "m";
  r.prompt = prompt;
  const size_t first = dispatch(s, f, r, rng);
  for (int i = 0; i < 50; ++i) {
    DecisionTrace trace;
    SchedulingState state;
    const Decision d = s.schedule(f.views(), r, state, rng, &trace);
    CHECK(d.index == first);
    CHECK(d.reason == DecisionReason::kPrefixAffinity);
    CHECK(d.prefix_match_blocks == 64);  // 4096 bytes / (16 tokens * 4 bytes)
    CHECK(d.prefix_total_blocks == 64);
    s.record_dispatch(f.view(d.index), r, state);
  }
  // A prompt sharing the first 3 KiB follows it too (75 % hit beats 0).
  const std::string sibling = make_prompt(4096, 2, 3072);
  r.prompt = sibling;
  const Decision d = decide(s, f, r, rng);
  CHECK(d.index == first);
  CHECK(d.prefix_match_blocks == 48);
}

TEST_CASE("default: unrelated prompts spread over the pool") {
  Fleet f;
  for (int i = 0; i < 8; ++i) f.add(1, 0.3);
  auto s = make(Profile::kDefault, small_index());
  Rng rng(10);
  std::map<size_t, int> counts;
  std::vector<std::string> prompts;
  for (int i = 0; i < 200; ++i) prompts.push_back(make_prompt(2048, 100 + i));
  for (const auto& p : prompts) {
    RequestFeatures r;
    r.model = "m";
    r.prompt = p;
    ++counts[dispatch(s, f, r, rng)];
  }
  CHECK(counts.size() == 8);
  for (const auto& [idx, n] : counts) CHECK(n > 10);
}

TEST_CASE("default: the since-scrape correction spreads a burst of one prompt; gie-default piles") {
  const std::string prompt = make_prompt(4096, 3);
  RequestFeatures r;
  r.model = "m";
  r.prompt = prompt;
  for (const Profile p : {Profile::kDefault, Profile::kGieDefault}) {
    Fleet f;
    for (int i = 0; i < 4; ++i) f.add(0, 0.1);
    auto s = make(p, small_index());
    Rng rng(11);
    std::map<size_t, int> counts;
    for (int i = 0; i < 40; ++i) ++counts[dispatch_in_burst(s, f, r, rng)];
    if (p == Profile::kDefault) {
      CHECK(counts.size() == 4);
      for (const auto& [idx, n] : counts) CHECK(n == 10);
    } else {
      CHECK(counts.size() == 1);  // GIE sees the same scrape 40 times: prefix wins every time
    }
  }
}

TEST_CASE("default: a pod that looked idle at the last scrape gets only its share of a burst") {
  std::vector<std::string> prompts;
  for (int i = 0; i < 20; ++i) prompts.push_back(make_prompt(1024, 500 + i));
  for (const Profile p : {Profile::kDefault, Profile::kGieDefault}) {
    Fleet f;
    f.add(0, 0.2);
    for (int i = 0; i < 3; ++i) f.add(3, 0.2);
    auto s = make(p, small_index());
    Rng rng(12);
    std::map<size_t, int> counts;
    for (const auto& pr : prompts) {
      RequestFeatures r;
      r.model = "m";
      r.prompt = pr;
      ++counts[dispatch_in_burst(s, f, r, rng)];
    }
    if (p == Profile::kDefault) {
      CHECK(counts[0] >= 5);
      CHECK(counts[0] <= 9);
      CHECK(counts.size() == 4);
    } else {
      CHECK(counts[0] == 20);
    }
  }
}

TEST_CASE("default: equal candidates are a uniform tie-break") {
  Fleet f;
  for (int i = 0; i < 4; ++i) f.add(1, 0.5);
  auto s = make(Profile::kDefault);
  Rng rng(13);
  std::map<size_t, int> counts;
  constexpr int kN = 8000;
  for (int i = 0; i < kN; ++i) {
    const Decision d = decide(s, f, {}, rng);
    CHECK(d.reason == DecisionReason::kTieBreak);
    ++counts[d.index];
  }
  for (const auto& [idx, n] : counts) {
    CHECK(n > kN / 4 - kN / 25);
    CHECK(n < kN / 4 + kN / 25);
  }
}

TEST_CASE("default: the trace explains the decision") {
  Fleet f;
  f.add(3, 0.2);
  f.add(0, 0.1);
  f.add(10, 0.2);
  f.view(0).in_flight = 4;
  f.view(1).ready = true;
  auto s = make(Profile::kDefault, small_index());
  Rng rng(14);
  const std::string prompt = make_prompt(256, 7);
  RequestFeatures r;
  r.model = "m";
  r.prompt = prompt;
  DecisionTrace trace;
  SchedulingState state;
  const Decision d = s.schedule(f.views(), r, state, rng, &trace);
  REQUIRE(d.index == 1u);
  CHECK(trace.profile == "default");
  CHECK(trace.decision.index == 1u);
  CHECK(trace.weights[0] == 2);
  CHECK(trace.prefix_total_blocks == 4);
  CHECK(trace.block_bytes == 64);
  CHECK(trace.candidates[2].filtered == FilterReason::kSaturatedQueue);
  CHECK(trace.candidates[2].scores[0] != trace.candidates[2].scores[0]);  // NaN: not scored
  CHECK(trace.candidates[0].scores[0] == doctest::Approx(0.4));           // 1 - 3/5
  CHECK(trace.candidates[0].scores[1] == doctest::Approx(0.8));           // 1 - kv
  CHECK(trace.candidates[0].scores[4] == doctest::Approx(0.75));          // 1 - 4/16
  CHECK(trace.candidates[1].scores[0] == doctest::Approx(1.0));
  CHECK(trace.candidates[1].scores[2] == doctest::Approx(0.0));
  CHECK(trace.candidates[1].total == doctest::Approx(2 + 1.8 + 0 + 1));
  const std::string json = trace.to_json([](uint32_t id) { return "ep\"" + std::to_string(id); });
  CHECK(json.find("\"winner\":\"ep\\\"1\"") != std::string::npos);
  CHECK(json.find("\"filtered\":\"saturated_queue\"") != std::string::npos);
  CHECK(json.find("\"reason\":\"least_queue\"") != std::string::npos);
  CHECK(json.find("\"lora_affinity\"") != std::string::npos);  // in the weights
  CHECK(to_string(d.reason) == "least_queue");
}

TEST_CASE("default: a zero prefix weight never hashes; record_dispatch is then a no-op") {
  Fleet f;
  f.add(0, 0.1);
  f.add(0, 0.1);
  SchedulerConfig c = SchedulerConfig::defaults_for(Profile::kDefault);
  c.weights.prefix = 0;
  auto index = small_index();
  Scheduler s(c, index);
  Rng rng(15);
  const std::string prompt = make_prompt(4096, 1);
  RequestFeatures r;
  r.prompt = prompt;
  SchedulingState state;
  const Decision d = s.schedule(f.views(), r, state, rng);
  s.record_dispatch(f.view(d.index), r, state);
  CHECK(state.block_hashes().empty());
  CHECK(index->count_occupied() == 0);
}

TEST_CASE("default: block size follows the scraped cache block size") {
  Fleet f;
  f.add(0, 0.1);
  f.metrics(0).block_size = 32;
  auto s = make(Profile::kDefault, small_index());
  CHECK(s.block_bytes_for(f.views()) == 128);
  f.metrics(0).block_size = 0;
  CHECK(s.block_bytes_for(f.views()) == 64);
  CHECK(s.capacity_for(f.view(0)) == 10000);
  f.metrics(0).num_gpu_blocks = 0;
  CHECK(s.capacity_for(f.view(0)) == 31250);
}

TEST_CASE("default: one Scheduler and one index serve several threads at once") {
  auto index = small_index();
  const Scheduler s(SchedulerConfig::defaults_for(Profile::kDefault), index);
  const Scheduler rr(SchedulerConfig::defaults_for(Profile::kRoundRobin), index);
  std::vector<std::string> prompts;
  for (int i = 0; i < 32; ++i) prompts.push_back(make_prompt(2048, 9, 1024 + i));
  std::atomic<int> picked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Fleet f;  // each worker builds its own views over shared metrics in the proxy
      for (int i = 0; i < 16; ++i) f.add(i % 4, 0.1 * (i % 5));
      Rng rng(50 + t);
      for (int i = 0; i < 2000; ++i) {
        RequestFeatures r;
        r.model = "m";
        r.prompt = prompts[rng.below(prompts.size())];
        SchedulingState state;
        const Decision d = s.schedule(f.views(), r, state, rng);
        if (d.picked()) {
          s.record_dispatch(f.view(d.index), r, state);
          ++picked;
        }
        rr.schedule(f.views(), r, state, rng);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(picked.load() == 8000);
  CHECK(index->count_occupied() > 0);
}

TEST_CASE("default: requests sent since the scrape and already answered add no load") {
  // A sequential client between two scrapes: each request finished before the next, so the
  // idle pod must stay the choice (only in-flight requests can still be queued there).
  Fleet f;
  f.add(0, 0.1);  // idle
  f.add(3, 0.5);  // busy
  auto s = make(Profile::kDefault);
  Rng rng(3);
  for (int i = 0; i < 20; ++i) {
    const size_t picked = dispatch(s, f, {}, rng);
    CHECK(picked == 0u);
    f.view(picked).dispatched_since_scrape += 1;  // sent since the scrape...
    f.view(picked).prompt_bytes_since_scrape += 4096;
    // ...and already answered: in_flight stays 0.
  }
  // The same requests still in flight do count: the idle pod fills up and the busy one wins.
  f.view(0).in_flight = 20;
  CHECK(decide(s, f, {}, rng).index == 1u);
}

TEST_CASE("default: prefixHeadroom lets the pod that holds the prompt queue a little longer") {
  const std::string prompt = make_prompt(4096, 21);
  const std::string other = make_prompt(4096, 22);
  RequestFeatures r;
  r.model = "m";
  r.prompt = prompt;
  for (const double headroom : {0.0, 1.0}) {
    CAPTURE(headroom);
    SchedulerConfig c = SchedulerConfig::defaults_for(Profile::kDefault);
    c.saturation.prefix_headroom = headroom;
    Scheduler s(c, small_index());
    Fleet f;
    f.add(7, 0.2);  // holds the prompt, 7 queued: over the plain limit (5), under 5 * (1 + 1)
    f.add(0, 0.2);
    f.add(0, 0.2);
    SchedulingState seed;
    s.record_dispatch(f.view(0), r, seed);
    Rng rng(31);
    DecisionTrace trace;
    const Decision d = decide(s, f, r, rng, &trace);
    if (headroom == 0) {
      CHECK(trace.candidates[0].filtered == FilterReason::kSaturatedQueue);
      CHECK(d.index != 0u);
    } else {
      // queue: 0 vs 1 (spread 7), prefix: 1 vs 0 -> 3 vs 2 points: the cached pod wins.
      CHECK(trace.candidates[0].filtered == FilterReason::kNone);
      CHECK(d.index == 0u);
      CHECK(d.reason == DecisionReason::kPrefixAffinity);
      CHECK(d.prefix_match_blocks == 64);
    }
    // A prompt the pod does not hold gets no extra headroom.
    RequestFeatures u = r;
    u.prompt = other;
    const Decision du = decide(s, f, u, rng, &trace);
    CHECK(trace.candidates[0].filtered == FilterReason::kSaturatedQueue);
    CHECK(du.index != 0u);
    // Past 5 * (1 + 1) the holder is filtered too.
    f.metrics(0).waiting = 10;
    CHECK(decide(s, f, r, rng, &trace).index != 0u);
    CHECK(trace.candidates[0].filtered == FilterReason::kSaturatedQueue);
  }
}

TEST_CASE("default: loraFreeSlotScore decides when a hot adapter spreads to a free slot") {
  Fleet f;
  f.add(1, 0.2, {"a1"}, {}, 4);        // runs the adapter, one request queued
  f.add(0, 0.2, {"a2"}, {}, 4);        // idle, free slots
  f.add(0, 0.2, {"a2", "a3"}, {}, 2);  // idle, no free slot
  RequestFeatures r;
  r.model = "a1";
  r.lora = LoraHint::kAdapter;
  for (const double free_slot : {0.8, 0.95}) {
    CAPTURE(free_slot);
    SchedulerConfig c = SchedulerConfig::defaults_for(Profile::kDefault);
    c.lora_free_slot_score = free_slot;
    Scheduler s(c);
    Rng rng(32);
    DecisionTrace trace;
    for (int i = 0; i < 20; ++i) {
      const Decision d = decide(s, f, r, rng, &trace);
      // queue 0.8 vs 1 (span 5): 1.6 + 4 = 5.6 vs 2 + 4 * free_slot (5.2 with GIE's 0.8, 5.8).
      CHECK(d.index == (free_slot == 0.8 ? 0u : 1u));
    }
    CHECK(trace.candidates[1].scores[3] == doctest::Approx(free_slot));
    CHECK(trace.candidates[2].scores[3] == 0.0);  // no slot: never worth a load elsewhere
  }
  // The GIE profiles keep GIE's 0.8 whatever the tunable says.
  SchedulerConfig g = SchedulerConfig::defaults_for(Profile::kGieDefault);
  g.weights = {1, 1, 1, 1, 0};
  g.lora_free_slot_score = 1.0;
  Scheduler gs(g);
  Rng rng(33);
  DecisionTrace trace;
  decide(gs, f, r, rng, &trace);
  CHECK(trace.candidates[1].scores[3] == doctest::Approx(0.8));
}
