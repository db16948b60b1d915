#include "sim/engine.h"

#include <doctest/doctest.h>

#include <chrono>
#include <vector>

namespace infergate::sim {
namespace {

using std::chrono::milliseconds;

const TimePoint kStart{std::chrono::seconds(1000)};

EngineConfig test_config() {
  EngineConfig config;
  config.ttft = milliseconds(100);
  config.itl = milliseconds(10);
  config.max_num_seqs = 2;
  config.max_loras = 1;
  config.block_size = 16;
  config.num_gpu_blocks = 100;
  config.lora_enabled = true;
  return config;
}

RequestSpec spec(int64_t prompt, int64_t output, std::string adapter = {}) {
  RequestSpec s;
  s.prompt_tokens = prompt;
  s.output_tokens = output;
  s.finish_reason = FinishReason::kLength;
  s.adapter = std::move(adapter);
  return s;
}

// Advances to each wakeup in turn and records when every event happened.
struct Recorded {
  EngineEvent event;
  TimePoint at;
};
std::vector<Recorded> run_until_idle(Engine& engine, TimePoint limit) {
  std::vector<Recorded> all;
  std::vector<EngineEvent> events;
  while (auto next = engine.next_wakeup()) {
    if (*next > limit) break;
    events.clear();
    engine.advance(*next, &events);
    for (const EngineEvent& e : events) all.push_back({e, *next});
  }
  return all;
}

}  // namespace

TEST_CASE("engine: first token after ttft, then one per itl, last marked finished") {
  Engine engine(test_config(), kStart);
  const RequestId id = engine.add_request(spec(10, 3), kStart);
  CHECK(engine.num_running() == 1);
  REQUIRE(engine.next_wakeup() == kStart + milliseconds(100));

  std::vector<EngineEvent> events;
  engine.advance(kStart + milliseconds(99), &events);
  CHECK(events.empty());

  const auto recorded = run_until_idle(engine, kStart + std::chrono::seconds(10));
  REQUIRE(recorded.size() == 3);
  CHECK(recorded[0].event.id == id);
  CHECK(recorded[0].event.tokens_done == 1);
  CHECK(recorded[0].at == kStart + milliseconds(100));
  CHECK(recorded[1].at == kStart + milliseconds(110));
  CHECK(recorded[2].at == kStart + milliseconds(120));
  CHECK_FALSE(recorded[1].event.finished);
  CHECK(recorded[2].event.finished);
  CHECK(engine.num_running() == 0);
  CHECK_FALSE(engine.next_wakeup().has_value());
}

TEST_CASE("engine: a late advance emits every due token with its scheduled spacing") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(10, 5), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart + milliseconds(125), &events);  // tokens at 100, 110, 120 are due
  REQUIRE(events.size() == 3);
  CHECK(events.back().tokens_done == 3);
  CHECK(engine.next_wakeup() == kStart + milliseconds(130));
}

TEST_CASE("engine: max_num_seqs queues requests until a slot frees") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(10, 1), kStart);
  engine.add_request(spec(10, 1), kStart);
  const RequestId third = engine.add_request(spec(10, 1), kStart);
  CHECK(engine.num_running() == 2);
  CHECK(engine.num_waiting() == 1);

  std::vector<EngineEvent> events;
  engine.advance(kStart + milliseconds(100), &events);  // both finish, the third is admitted
  CHECK(events.size() == 2);
  CHECK(engine.num_running() == 1);
  CHECK(engine.num_waiting() == 0);
  REQUIRE(engine.next_wakeup() == kStart + milliseconds(200));
  events.clear();
  engine.advance(kStart + milliseconds(200), &events);
  REQUIRE(events.size() == 1);
  CHECK(events[0].id == third);
  // Queueing counts in the time to first token: 200 ms, not 100.
  CHECK(engine.metrics().time_to_first_token.sum() == doctest::Approx(0.1 + 0.1 + 0.2));
}

TEST_CASE("engine: max_loras blocks another adapter but lets base requests pass") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(10, 2, "a"), kStart);
  engine.add_request(spec(10, 2, "b"), kStart);  // blocked: one adapter slot
  engine.add_request(spec(10, 2), kStart);       // base model: goes ahead
  CHECK(engine.num_running() == 2);
  CHECK(engine.num_waiting() == 1);
  REQUIRE_FALSE(engine.lora_series().empty());
  const LoraInfoSeries& newest = engine.lora_series().back();
  CHECK(newest.running_adapters == "a");
  CHECK(newest.waiting_adapters == "b");

  run_until_idle(engine, kStart + std::chrono::seconds(10));
  CHECK(engine.num_waiting() == 0);
  CHECK(engine.num_running() == 0);
  bool saw_b_running = false;
  for (const LoraInfoSeries& s : engine.lora_series()) saw_b_running |= s.running_adapters == "b";
  CHECK(saw_b_running);
}

TEST_CASE("engine: the idle LoRA series exists from the start, only with LoRA enabled") {
  Engine with_lora(test_config(), kStart);
  REQUIRE(with_lora.lora_series().size() == 1);
  CHECK(with_lora.lora_series()[0].running_adapters.empty());
  CHECK(with_lora.lora_series()[0].updated == kStart);

  EngineConfig config = test_config();
  config.lora_enabled = false;
  Engine without(config, kStart);
  CHECK(without.lora_series().empty());
}

TEST_CASE("engine: KV usage counts the blocks of the tokens held so far") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(32, 2), kStart);  // 2 blocks of prompt
  CHECK(engine.kv_cache_usage() == doctest::Approx(0.02));
  std::vector<EngineEvent> events;
  engine.advance(kStart + milliseconds(100), &events);  // 33 tokens: a third block
  CHECK(engine.kv_cache_usage() == doctest::Approx(0.03));
  engine.advance(kStart + milliseconds(110), &events);  // finished: freed
  CHECK(engine.kv_cache_usage() == 0.0);
}

TEST_CASE("engine: a request that does not fit next to the running ones waits") {
  EngineConfig config = test_config();
  config.max_num_seqs = 10;
  config.num_gpu_blocks = 10;
  Engine engine(config, kStart);
  engine.add_request(spec(100, 12), kStart);  // 7 blocks reserved
  engine.add_request(spec(50, 14), kStart);   // 4 more would exceed 10
  CHECK(engine.num_running() == 1);
  CHECK(engine.num_waiting() == 1);
  // Bigger than the whole cache: runs alone rather than never.
  Engine lone(config, kStart);
  lone.add_request(spec(1000, 1), kStart);
  CHECK(lone.num_running() == 1);
}

TEST_CASE("engine: abort frees the slot, counts abort and admits the next") {
  Engine engine(test_config(), kStart);
  const RequestId first = engine.add_request(spec(10, 5), kStart);
  engine.add_request(spec(10, 5), kStart);
  const RequestId queued = engine.add_request(spec(10, 5), kStart);
  engine.abort_request(queued, kStart + milliseconds(1));  // waiting one
  CHECK(engine.num_waiting() == 0);
  engine.add_request(spec(10, 5), kStart + milliseconds(2));
  engine.abort_request(first, kStart + milliseconds(50));  // running one
  CHECK(engine.num_running() == 2);
  CHECK(engine.metrics().success_abort == 2);
  engine.abort_request(first, kStart + milliseconds(51));  // unknown now: ignored
  CHECK(engine.metrics().success_abort == 2);

  // The aborted request's stale deadline produces nothing.
  const auto recorded = run_until_idle(engine, kStart + std::chrono::seconds(10));
  for (const Recorded& r : recorded) CHECK(r.event.id != first);
  CHECK(recorded.size() == 10);
}

TEST_CASE("engine: counters and histograms follow vLLM's definitions") {
  Engine engine(test_config(), kStart);
  RequestSpec stop = spec(20, 4);
  stop.finish_reason = FinishReason::kStop;
  engine.add_request(stop, kStart);
  engine.add_request(spec(8, 2), kStart);
  run_until_idle(engine, kStart + std::chrono::seconds(10));
  const EngineMetrics& m = engine.metrics();
  CHECK(m.prompt_tokens == 28);
  CHECK(m.generation_tokens == 6);
  CHECK(m.success_stop == 1);
  CHECK(m.success_length == 1);
  CHECK(m.time_to_first_token.count() == 2);
  CHECK(m.time_per_output_token.count() == 4);  // tokens after the first
  CHECK(m.e2e_latency.count() == 2);
  CHECK(m.e2e_latency.sum() == doctest::Approx(0.13 + 0.11));
  CHECK(m.request_generation_tokens.sum() == 6);
}

TEST_CASE("engine: a pooling request finishes after its prefill with one event") {
  Engine engine(test_config(), kStart);
  const RequestId id = engine.add_request(spec(10, 0), kStart);
  const auto recorded = run_until_idle(engine, kStart + std::chrono::seconds(1));
  REQUIRE(recorded.size() == 1);
  CHECK(recorded[0].event.id == id);
  CHECK(recorded[0].event.tokens_done == 0);
  CHECK(recorded[0].event.finished);
  CHECK(recorded[0].at == kStart + milliseconds(100));
  CHECK(engine.metrics().generation_tokens == 0);
}

TEST_CASE("histogram: buckets are upper-inclusive, +Inf catches the rest") {
  Histogram h({0.1, 1.0});
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  CHECK(h.bucket_counts()[0] == 1);
  CHECK(h.bucket_counts()[1] == 1);
  CHECK(h.bucket_counts()[2] == 1);
  CHECK(h.count() == 3);
  CHECK(h.sum() == doctest::Approx(7.6));
  CHECK(one_two_five_buckets(100) == std::vector<double>{1, 2, 5, 10, 20, 50, 100});
  CHECK(one_two_five_buckets(4096).back() == 2000);
}

}  // namespace infergate::sim
