// gie-default (GIE v1.x scorers), gie-legacy (the v0.3 filter tree) and the simple profiles.

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "routing/scheduler.h"
#include "routing_test_util.h"

using namespace infergate::routing;
using infergate::routing::test::Fleet;
using infergate::routing::test::make_prompt;

namespace {

Decision decide(const Scheduler& s, Fleet& f, const RequestFeatures& r, Rng& rng,
                DecisionTrace* trace = nullptr) {
  SchedulingState state;
  return s.schedule(f.views(), r, state, rng, trace);
}

std::map<size_t, int> histogram(const Scheduler& s, Fleet& f, const RequestFeatures& r, Rng& rng,
                                int n) {
  std::map<size_t, int> counts;
  for (int i = 0; i < n; ++i) {
    const Decision d = decide(s, f, r, rng);
    REQUIRE(d.picked());
    ++counts[d.index];
  }
  return counts;
}

}  // namespace

TEST_CASE("gie-default: queue 2 (min-max), kv-cache 2 (1 - kv), prefix 3") {
  Fleet f;
  f.add(3, 0.2);
  f.add(0, 0.1);
  f.add(10, 0.2);
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieDefault));
  CHECK(s.config().weights.queue == 2);
  CHECK(s.config().weights.kv_cache == 2);
  CHECK(s.config().weights.prefix == 3);
  CHECK(s.config().weights.lora == 0);
  Rng rng(1);
  DecisionTrace trace;
  const Decision d = decide(s, f, {}, rng, &trace);
  CHECK(d.index == 1u);
  CHECK(trace.candidates[0].scores[0] == doctest::Approx(0.7));  // (10 - 3) / (10 - 0)
  CHECK(trace.candidates[2].scores[0] == doctest::Approx(0.0));
  CHECK(trace.candidates[0].total == doctest::Approx(3.0));
  CHECK(trace.candidates[1].total == doctest::Approx(3.8));
  CHECK(trace.candidates[2].total == doctest::Approx(1.6));
  CHECK(trace.candidates[2].filtered == FilterReason::kNone);  // no saturation filter
}

TEST_CASE("gie-default: equal queues score 1 each; max score with a uniform tie-break") {
  Fleet f;
  for (int i = 0; i < 3; ++i) f.add(4, 0.3);
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieDefault));
  Rng rng(2);
  DecisionTrace trace;
  decide(s, f, {}, rng, &trace);
  CHECK(trace.candidates[0].scores[0] == doctest::Approx(1.0));
  const auto counts = histogram(s, f, {}, rng, 6000);
  for (const auto& [idx, n] : counts) {
    CHECK(n > 1800);
    CHECK(n < 2200);
  }
}

TEST_CASE("gie-default: no saturation or staleness filter; a prefix hit outweighs the queue") {
  Fleet f;
  f.add(6, 0.1);
  f.add(0, 0.1);
  f.view(0).metrics_age = std::chrono::seconds(10);
  auto index = std::make_shared<PrefixIndex>(4u << 20);
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieDefault), index);
  Rng rng(3);
  const std::string prompt = make_prompt(2048, 1);
  RequestFeatures r;
  r.model = "m";
  r.prompt = prompt;
  SchedulingState state;
  s.record_dispatch(f.view(0), r, state);  // pod 0 served this prompt before
  // pod 0: queue 0 + kv 1.8 + prefix 3 = 4.8; pod 1: 2 + 1.8 + 0 = 3.8.
  for (int i = 0; i < 10; ++i) CHECK(decide(s, f, r, rng).index == 0u);
  // GIE never corrects with the gateway's own counters.
  f.view(0).dispatched_since_scrape = 100;
  f.view(0).in_flight = 100;
  CHECK(decide(s, f, r, rng).index == 0u);
}

TEST_CASE("gie-default: missing metrics read as zeros") {
  Fleet f;
  f.add(2, 0.5);
  f.add(0, 0.0);
  f.view(1).metrics = nullptr;
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieDefault));
  Rng rng(4);
  CHECK(decide(s, f, {}, rng).index == 1u);
}

// ---- gie-legacy ----

TEST_CASE("gie-legacy: critical, low queue: the adapter-active pod wins despite higher kv") {
  Fleet f;
  f.add(0, 0.5, {"lora-a"}, {}, 4);    // adapter active
  f.add(0, 0.1, {}, {}, 4);            // free slot, lower kv
  f.add(200, 0.0, {"lora-a"}, {}, 4);  // above queueingThresholdLoRA (128)
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieLegacy));
  Rng rng(5);
  RequestFeatures r;
  r.model = "lora-a";
  r.priority = 1;
  const auto counts = histogram(s, f, r, rng, 5000);
  CHECK(counts.count(2) == 0);
  CHECK(counts.at(0) >= 4975);  // kept with probability 0.999
  CHECK(counts.count(1) == 1);  // and the free-slot group 0.1 % of the time
  DecisionTrace trace;
  decide(s, f, r, rng, &trace);
  REQUIRE(trace.path.size() >= 4);
  CHECK(trace.path[0] == "critical request");
  CHECK(trace.path[1] == "low queueing filter");
  CHECK(trace.path[2] == "affinity LoRA");
  CHECK(trace.path[3] == "least queuing");
  CHECK(trace.candidates[2].filtered == FilterReason::kLegacyLowQueue);
  CHECK(trace.decision.reason == DecisionReason::kLegacyTree);
}

TEST_CASE("gie-legacy: all queues long: least queuing first, then LoRA, then least KV") {
  Fleet f;
  f.add(130, 0.3);
  f.add(140, 0.1);
  f.add(300, 0.0);
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieLegacy));
  Rng rng(6);
  RequestFeatures r;
  r.model = "base";
  // Band [130, 130 + (300-130)/3 = 186] keeps 0 and 1; LoRA: nothing suitable, passes both;
  // KV band [0.1, 0.1 + 0.2/2 = 0.2] keeps 1.
  for (int i = 0; i < 20; ++i) CHECK(decide(s, f, r, rng).index == 1u);
  DecisionTrace trace;
  decide(s, f, r, rng, &trace);
  CHECK(trace.path[1] == "low queueing filter");
  CHECK(trace.path[2] == "least queuing");
  CHECK(trace.path[3] == "low cost LoRA");
  CHECK(trace.candidates[2].filtered == FilterReason::kLegacyLeastQueue);
  CHECK(trace.candidates[0].filtered == FilterReason::kLegacyLeastKvCache);
}

TEST_CASE("gie-legacy: least-queuing band uses integer division, least-KV a real one") {
  Fleet f;
  f.add(0, 0.3);
  f.add(2, 0.3);
  f.add(9, 0.3);  // band [0, 0 + 9/3 = 3]
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieLegacy));
  Rng rng(7);
  auto counts = histogram(s, f, {}, rng, 2000);
  CHECK(counts.count(2) == 0);
  CHECK(counts[0] > 850);
  CHECK(counts[1] > 850);

  Fleet g;
  g.add(0, 0.1);
  g.add(0, 0.2);
  g.add(0, 0.5);  // band [0.1, 0.1 + 0.4/3]
  counts = histogram(s, g, {}, rng, 2000);
  CHECK(counts.count(2) == 0);
  CHECK(counts[0] > 850);
  CHECK(counts[1] > 850);
}

TEST_CASE("gie-legacy: sheddable requests only go to pods with capacity, else are dropped") {
  Fleet f;
  f.add(6, 0.1);   // queueing above 5
  f.add(0, 0.85);  // kv above 0.8
  f.add(5, 0.8);   // exactly at both thresholds: has capacity (<=)
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieLegacy));
  Rng rng(8);
  RequestFeatures r;
  r.priority = -1;
  for (int i = 0; i < 20; ++i) CHECK(decide(s, f, r, rng).index == 2u);
  f.metrics(2).waiting = 6;
  DecisionTrace trace;
  const Decision d = decide(s, f, r, rng, &trace);
  CHECK(d.status == DecisionStatus::kShed);
  CHECK(d.reason == DecisionReason::kShed);
  CHECK(trace.path.back() == "drop request");
  CHECK(trace.candidates[0].filtered == FilterReason::kLegacyNoCapacity);
  // A critical request is never dropped by the tree.
  r.priority = 0;
  CHECK(decide(s, f, r, rng).picked());
  // v0.3 exactly: only Critical (1) is critical, Standard (0) sheds too.
  SchedulerConfig v03 = SchedulerConfig::defaults_for(Profile::kGieLegacy);
  v03.legacy.critical_priority = 1;
  Scheduler exact(v03);
  CHECK(decide(exact, f, r, rng).status == DecisionStatus::kShed);
  r.priority = 1;
  CHECK(decide(exact, f, r, rng).picked());
}

TEST_CASE("gie-legacy: no ready endpoint") {
  Fleet f;
  f.add(0, 0.1);
  f.view(0).ready = false;
  Scheduler s(SchedulerConfig::defaults_for(Profile::kGieLegacy));
  Rng rng(9);
  CHECK(decide(s, f, {}, rng).status == DecisionStatus::kNoEndpoint);
}

// ---- simple profiles ----

TEST_CASE("round-robin: ready candidates in turn, one counter for every thread") {
  Fleet f;
  for (int i = 0; i < 4; ++i) f.add(0, 0);
  f.view(2).ready = false;
  Scheduler s(SchedulerConfig::defaults_for(Profile::kRoundRobin));
  Rng a(10), b(11);
  std::vector<size_t> seen;
  for (int i = 0; i < 6; ++i) {
    const Decision d = decide(s, f, {}, (i % 2) ? a : b);
    CHECK(d.reason == DecisionReason::kRoundRobin);
    seen.push_back(d.index);
  }
  CHECK(seen == std::vector<size_t>{0, 1, 3, 0, 1, 3});
}

TEST_CASE("random: uniform over ready candidates, metrics ignored") {
  Fleet f;
  f.add(100, 0.99);
  f.add(0, 0);
  f.add(0, 0);
  f.view(2).ready = false;
  Scheduler s(SchedulerConfig::defaults_for(Profile::kRandom));
  Rng rng(12);
  const auto counts = histogram(s, f, {}, rng, 4000);
  CHECK(counts.count(2) == 0);
  CHECK(counts.at(0) > 1800);
  CHECK(counts.at(1) > 1800);
}

TEST_CASE("least-request: the fewest gateway in-flight requests") {
  Fleet f;
  f.add(0, 0);
  f.add(50, 0.9);
  f.view(0).in_flight = 3;
  f.view(1).in_flight = 1;
  Scheduler s(SchedulerConfig::defaults_for(Profile::kLeastRequest));
  Rng rng(13);
  const Decision d = decide(s, f, {}, rng);
  CHECK(d.index == 1u);
  CHECK(d.reason == DecisionReason::kLeastRequest);
}

TEST_CASE("profile names round-trip") {
  for (const auto name : kProfileNames) {
    const auto p = parse_profile(name);
    REQUIRE(p.has_value());
    CHECK(profile_name(*p) == name);
  }
  CHECK_FALSE(parse_profile("gie").has_value());
}

TEST_CASE("scheduler config validation names the bad field") {
  for (const auto name : kProfileNames)
    CHECK(SchedulerConfig::defaults_for(*parse_profile(name)).validate().empty());
  SchedulerConfig c;
  c.weights.prefix = -1;
  CHECK(c.validate().find("weights") != std::string::npos);
  c = {};
  c.saturation.kv_cache_threshold = 1.5;
  CHECK(c.validate().find("kvCacheThreshold") != std::string::npos);
  c = {};
  c.prefix.bytes_per_token = 0;
  CHECK(c.validate().find("bytesPerToken") != std::string::npos);
  c = {};
  c.saturation.prefix_headroom = -0.5;
  CHECK(c.validate().find("prefixHeadroom") != std::string::npos);
  c = {};
  c.lora_free_slot_score = 1.2;
  CHECK(c.validate().find("loraFreeSlotScore") != std::string::npos);
  c.lora_free_slot_score = 1.0;
  CHECK(c.validate().empty());
}
