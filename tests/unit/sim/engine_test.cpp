#include "sim/engine.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace infergate::sim {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

const TimePoint kStart{std::chrono::seconds(1000)};

TimePoint at_ms(double ms) {
  return kStart +
         std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

// Round numbers: a step costs 10 ms + 0.1 ms per prefill token + 1 ms per decoding sequence
// (+ 50 ms per LoRA load). 100 blocks of 16 tokens.
EngineConfig test_config() {
  EngineConfig config;
  config.cost.base = milliseconds(10);
  config.cost.per_prefill_token = microseconds(100);
  config.cost.per_decode_seq = milliseconds(1);
  config.cost.lora_load = milliseconds(50);
  config.max_num_seqs = 4;
  config.max_num_batched_tokens = 1024;
  config.block_size = 16;
  config.num_gpu_blocks = 100;
  config.prefix_caching = true;
  config.lora_enabled = true;
  config.max_loras = 1;
  config.max_model_len = 4096;
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

// A prompt of text, tokenized and hashed as the HTTP side does (4 bytes a token).
RequestSpec text_spec(const std::string& text, int64_t output, std::string adapter = {}) {
  RequestSpec s = spec(0, output, std::move(adapter));
  s.prompt_hashes = BlockHasher(16);
  s.prompt_hashes.add_text(text);
  s.prompt_tokens = s.prompt_hashes.tokens();
  return s;
}

std::string text_of(size_t bytes, char fill) {
  std::string text;
  for (size_t i = 0; i < bytes; ++i)
    text.push_back(static_cast<char>(fill + static_cast<char>(i % 7)));
  return text;
}

struct Recorded {
  EngineEvent event;
  TimePoint at;
};

// Advances to each wake-up in turn; events are stamped with the wake-up that produced them,
// which is their step's end.
std::vector<Recorded> run_until_idle(Engine& engine,
                                     TimePoint limit = kStart + std::chrono::hours(1)) {
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

std::vector<Recorded> of(const std::vector<Recorded>& all, RequestId id) {
  std::vector<Recorded> out;
  for (const Recorded& r : all) {
    if (r.event.id == id) out.push_back(r);
  }
  return out;
}

}  // namespace

TEST_CASE("engine: a lone request: prefill step, then one decode step per token") {
  Engine engine(test_config(), kStart);
  const RequestId id = engine.add_request(spec(100, 3), kStart);
  // The step starts when the engine runs (requests arriving together share it).
  REQUIRE(engine.next_wakeup() == kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  CHECK(events.empty());
  CHECK(engine.num_running() == 1);
  REQUIRE(engine.next_wakeup() == at_ms(20));  // 10 + 100 * 0.1

  const auto recorded = run_until_idle(engine);
  REQUIRE(recorded.size() == 3);
  CHECK(recorded[0].event.id == id);
  CHECK(recorded[0].event.tokens_done == 1);
  CHECK(recorded[0].at == at_ms(20));
  CHECK(recorded[1].at == at_ms(31));  // 10 + 1 decoding sequence
  CHECK(recorded[2].at == at_ms(42));
  CHECK_FALSE(recorded[1].event.finished);
  CHECK(recorded[2].event.finished);
  CHECK(engine.num_running() == 0);
  CHECK_FALSE(engine.next_wakeup().has_value());
}

TEST_CASE("engine: a late advance completes every due step with its own timing") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(100, 5), kStart);
  std::vector<EngineEvent> events;
  engine.advance(at_ms(45), &events);  // steps end at 20, 31, 42
  REQUIRE(events.size() == 3);
  CHECK(events.back().tokens_done == 3);
  CHECK(engine.next_wakeup() == at_ms(53));
  CHECK(engine.metrics().inter_token_latency.sum() == doctest::Approx(0.022));
}

TEST_CASE("engine: fixed-latency mode: a prefill step takes ttft, a decode step itl") {
  EngineConfig config = test_config();
  config.cost.fixed = true;
  config.cost.prefill_step = milliseconds(100);
  config.cost.decode_step = milliseconds(10);
  Engine engine(config, kStart);
  engine.add_request(spec(1000, 3), kStart);
  const auto recorded = run_until_idle(engine);
  REQUIRE(recorded.size() == 3);
  CHECK(recorded[0].at == at_ms(100));
  CHECK(recorded[1].at == at_ms(110));
  CHECK(recorded[2].at == at_ms(120));
}

TEST_CASE("engine: continuous batching: requests share steps, a newcomer waits for the step") {
  Engine engine(test_config(), kStart);
  const RequestId a = engine.add_request(spec(100, 3), kStart);
  const RequestId b = engine.add_request(spec(100, 3), kStart);  // same instant: same step
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  CHECK(engine.num_running() == 2);
  CHECK(engine.next_wakeup() == at_ms(30));  // 10 + 200 prefill tokens

  const RequestId c = engine.add_request(spec(50, 1), at_ms(5));  // mid-step: next step
  const auto recorded = run_until_idle(engine);
  // Step 2 at 30: a and b decode, c prefills: 10 + 2 * 1 + 50 * 0.1 = 17.
  REQUIRE(of(recorded, c).size() == 1);
  CHECK(of(recorded, c)[0].at == at_ms(47));
  CHECK(of(recorded, a)[1].at == at_ms(47));
  // Step 3: a and b decode: 12 ms.
  CHECK(of(recorded, b)[2].at == at_ms(59));
  CHECK(engine.metrics().queue_time.sum() == doctest::Approx(0.025));  // c waited 25 ms
}

TEST_CASE("engine: max_num_seqs: more requests wait until one finishes") {
  EngineConfig config = test_config();
  config.max_num_seqs = 2;
  Engine engine(config, kStart);
  engine.add_request(spec(10, 1), kStart);
  engine.add_request(spec(10, 3), kStart);
  const RequestId third = engine.add_request(spec(10, 1), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  CHECK(engine.num_running() == 2);
  CHECK(engine.num_waiting() == 1);
  engine.advance(at_ms(12), &events);  // first step: 10 + 20 * 0.1; the first request is done
  CHECK(engine.num_running() == 2);    // ... and the third took its seat in the next step
  CHECK(engine.num_waiting() == 0);
  const auto recorded = run_until_idle(engine);
  REQUIRE(of(recorded, third).size() == 1);
  // Step 2: one decode + 10 prefill tokens = 12 ms.
  CHECK(of(recorded, third)[0].at == at_ms(24));
  CHECK(engine.metrics().time_to_first_token.sum() == doctest::Approx(0.012 + 0.012 + 0.024));
}

TEST_CASE("engine: admission needs free KV blocks; the head of the queue blocks the rest") {
  EngineConfig config = test_config();
  config.num_gpu_blocks = 10;  // 160 tokens
  Engine engine(config, kStart);
  engine.add_request(spec(120, 2), kStart);                         // 8 blocks
  const RequestId big = engine.add_request(spec(50, 1), kStart);    // 4 blocks: not now
  const RequestId small = engine.add_request(spec(10, 1), kStart);  // 1 block, but FCFS
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  CHECK(engine.num_running() == 1);
  CHECK(engine.num_waiting() == 2);
  CHECK(engine.kv_cache_usage() == doctest::Approx(0.8));
  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, big).size() == 1);
  CHECK(of(recorded, small).size() == 1);
  CHECK(of(recorded, big)[0].at <= of(recorded, small)[0].at);
  CHECK(engine.metrics().num_preemptions == 0);
}

TEST_CASE("engine: when blocks run out the newest running request is preempted and recomputed") {
  EngineConfig config = test_config();
  config.num_gpu_blocks = 10;  // 160 tokens
  config.prefix_caching = false;
  Engine engine(config, kStart);
  const RequestId a = engine.add_request(spec(64, 60), kStart);    // 4 blocks, grows to 8
  const RequestId b = engine.add_request(spec(64, 60), at_ms(1));  // 4 blocks, grows to 8
  std::vector<Recorded> recorded;
  std::vector<EngineEvent> events;
  double max_usage = 0;
  while (auto next = engine.next_wakeup()) {
    events.clear();
    engine.advance(*next, &events);
    for (const EngineEvent& e : events) recorded.push_back({e, *next});
    max_usage = std::max(max_usage, engine.kv_cache_usage());
  }
  CHECK(engine.metrics().num_preemptions >= 1);
  CHECK(max_usage <= 1.0);
  // Both complete, each output token exactly once and in order, the newest one last.
  for (const RequestId id : {a, b}) {
    const auto mine = of(recorded, id);
    REQUIRE(mine.size() == 60);
    for (size_t i = 0; i < mine.size(); ++i) CHECK(mine[i].event.tokens_done == int64_t(i) + 1);
    CHECK(mine.back().event.finished);
  }
  CHECK(of(recorded, a).back().at < of(recorded, b).back().at);
  CHECK(engine.metrics().generation_tokens == 120);
  CHECK(engine.kv_cache_usage() == 0.0);
}

TEST_CASE("engine: a cached prefix skips prefill and is reported as cached tokens") {
  Engine engine(test_config(), kStart);
  const std::string text = text_of(400, 'a');  // 100 tokens: 6 full blocks
  const RequestId first = engine.add_request(text_spec(text, 1), kStart);
  auto recorded = run_until_idle(engine);
  CHECK(of(recorded, first)[0].at == at_ms(20));
  CHECK(of(recorded, first)[0].event.cached_tokens == 0);

  // Same prompt: 6 blocks (96 tokens) come from the cache, 4 are computed.
  const RequestId second = engine.add_request(text_spec(text, 1), at_ms(100));
  recorded = run_until_idle(engine);
  REQUIRE(of(recorded, second).size() == 1);
  CHECK(of(recorded, second)[0].at == at_ms(110.4));
  CHECK(of(recorded, second)[0].event.cached_tokens == 96);

  // A prompt sharing the first 200 bytes (50 tokens, 3 full blocks) reuses those.
  const RequestId partial =
      engine.add_request(text_spec(text.substr(0, 200) + text_of(200, 'q'), 1), at_ms(200));
  recorded = run_until_idle(engine);
  CHECK(of(recorded, partial)[0].event.cached_tokens == 48);

  // A LoRA adapter's KV differs from the base model's: no sharing.
  const RequestId adapter = engine.add_request(text_spec(text, 1, "sql"), at_ms(300));
  recorded = run_until_idle(engine);
  CHECK(of(recorded, adapter)[0].event.cached_tokens == 0);

  const EngineMetrics& m = engine.metrics();
  CHECK(m.prefix_cache_queries == 400);
  CHECK(m.prefix_cache_hits == 96 + 48);
  CHECK(m.prompt_tokens == 400);  // cached tokens still count as prompt tokens
}

TEST_CASE("engine: a whole-block prompt still computes its last token") {
  Engine engine(test_config(), kStart);
  const std::string text = text_of(128, 'k');  // 32 tokens: 2 full blocks
  engine.add_request(text_spec(text, 1), kStart);
  run_until_idle(engine);
  const RequestId again = engine.add_request(text_spec(text, 1), at_ms(100));
  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, again)[0].event.cached_tokens == 16);
}

TEST_CASE("engine: without prefix caching nothing is reused or counted") {
  EngineConfig config = test_config();
  config.prefix_caching = false;
  Engine engine(config, kStart);
  const std::string text = text_of(400, 'a');
  engine.add_request(text_spec(text, 1), kStart);
  run_until_idle(engine);
  const RequestId again = engine.add_request(text_spec(text, 1), at_ms(100));
  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, again)[0].event.cached_tokens == 0);
  CHECK(of(recorded, again)[0].at == at_ms(120));
  CHECK(engine.metrics().prefix_cache_queries == 0);
}

TEST_CASE("engine: cached blocks are evicted LRU, a prompt's tail before its head") {
  EngineConfig config = test_config();
  config.num_gpu_blocks = 12;
  Engine engine(config, kStart);
  const std::string text = text_of(400, 'a');  // 100 tokens -> 7 blocks, 6 of them full
  engine.add_request(text_spec(text, 1), kStart);
  run_until_idle(engine);
  // 161 other tokens need 11 blocks: the 5 never used, then 6 of the cached ones, tail first.
  engine.add_request(text_spec(text_of(644, 'z'), 1), at_ms(100));
  run_until_idle(engine);
  const RequestId again = engine.add_request(text_spec(text, 1), at_ms(200));
  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, again)[0].event.cached_tokens == 16);  // only the first block survived
  CHECK(engine.stats().kv_evictions >= 5);
}

TEST_CASE("engine: chunked prefill: a long prompt is cut to the step budget, decodes go on") {
  EngineConfig config = test_config();
  config.max_num_batched_tokens = 64;
  Engine engine(config, kStart);
  const RequestId b = engine.add_request(spec(10, 10), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);                                 // step 1: b's prefill, 11 ms
  const RequestId a = engine.add_request(spec(200, 1), at_ms(1));  // 200 tokens: 4 chunks
  const auto recorded = run_until_idle(engine);
  // Steps 2-5: b decodes one token each, a prefills 63 + 63 + 63 + 11 tokens.
  const auto bs = of(recorded, b);
  REQUIRE(bs.size() == 10);
  CHECK(bs[0].at == at_ms(11));
  CHECK(bs[1].at == at_ms(11 + 17.3));
  CHECK(bs[4].at == at_ms(11 + 3 * 17.3 + 12.1));
  REQUIRE(of(recorded, a).size() == 1);
  CHECK(of(recorded, a)[0].at == bs[4].at);                // a's first token with the last chunk
  CHECK(engine.metrics().iteration_tokens.count() == 10);  // b's 10 tokens, one per step
}

TEST_CASE("engine: without chunked prefill a prompt larger than the remaining budget waits") {
  EngineConfig config = test_config();
  config.max_num_batched_tokens = 64;
  config.chunked_prefill = false;
  Engine engine(config, kStart);
  const RequestId b = engine.add_request(spec(10, 4), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  const RequestId a = engine.add_request(spec(64, 1), at_ms(1));  // 64 > 63 left beside b
  const auto recorded = run_until_idle(engine);
  REQUIRE(of(recorded, a).size() == 1);
  CHECK(of(recorded, a)[0].at > of(recorded, b).back().at);
}

TEST_CASE("engine: LoRA: one slot, other adapters wait, loads cost time, base requests pass") {
  Engine engine(test_config(), kStart);  // max_loras 1, load 50 ms
  const RequestId a = engine.add_request(spec(10, 2, "a"), kStart);
  const RequestId b = engine.add_request(spec(10, 2, "b"), kStart);
  const RequestId base = engine.add_request(spec(10, 1), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  CHECK(engine.num_running() == 2);  // a and the base request; b waits for the slot
  CHECK(engine.num_waiting() == 1);
  REQUIRE_FALSE(engine.lora_series().empty());
  CHECK(engine.lora_series().back().running_adapters == "a");
  CHECK(engine.lora_series().back().waiting_adapters == "b");
  // Step 1 loads "a": 10 + 20 * 0.1 + 50.
  CHECK(engine.next_wakeup() == at_ms(62));

  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, base)[0].at == at_ms(62));
  CHECK(of(recorded, a)[1].at == at_ms(73));  // "a" stays loaded: 10 + 1
  // b is admitted once a is done and pays the load: 10 + 1 + 50.
  REQUIRE(of(recorded, b).size() == 2);
  CHECK(of(recorded, b)[0].at == at_ms(73 + 61));
  CHECK(engine.stats().lora_loads == 2);
  bool saw_b_running = false;
  for (const LoraInfoSeries& s : engine.lora_series()) saw_b_running |= s.running_adapters == "b";
  CHECK(saw_b_running);

  // "b" is resident now: no load. "a" was evicted: it loads again.
  const RequestId b2 = engine.add_request(spec(10, 1, "b"), at_ms(1000));
  auto later = run_until_idle(engine);
  CHECK(of(later, b2)[0].at == at_ms(1011));
  const RequestId a2 = engine.add_request(spec(10, 1, "a"), at_ms(2000));
  later = run_until_idle(engine);
  CHECK(of(later, a2)[0].at == at_ms(2061));
}

TEST_CASE("engine: LoRA: two slots run two adapters together; a preloaded adapter pays nothing") {
  EngineConfig config = test_config();
  config.max_loras = 2;
  Engine engine(config, kStart);
  engine.load_adapter("p");
  const RequestId p = engine.add_request(spec(10, 1, "p"), kStart);
  const RequestId q = engine.add_request(spec(10, 1, "q"), kStart);
  const auto recorded = run_until_idle(engine);
  // One step with both: only "q" is loaded.
  CHECK(of(recorded, p)[0].at == at_ms(62));
  CHECK(of(recorded, q)[0].at == at_ms(62));
  CHECK(engine.stats().lora_loads == 1);
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

TEST_CASE("engine: KV usage is the blocks the running requests hold") {
  Engine engine(test_config(), kStart);
  engine.add_request(spec(32, 3), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);  // the prefill holds 2 blocks
  CHECK(engine.kv_cache_usage() == doctest::Approx(0.02));
  engine.advance(at_ms(13.2), &events);  // token 1; step 2 computes token 33: a third block
  CHECK(engine.kv_cache_usage() == doctest::Approx(0.03));
  run_until_idle(engine);
  CHECK(engine.kv_cache_usage() == 0.0);  // finished: its cached blocks count as free
  CHECK(engine.stats().kv_cached_blocks == 2);
}

TEST_CASE("engine: abort frees the slot and blocks, counts abort, its step is skipped") {
  EngineConfig config = test_config();
  config.max_num_seqs = 2;
  Engine engine(config, kStart);
  const RequestId first = engine.add_request(spec(10, 5), kStart);
  engine.add_request(spec(10, 5), kStart);
  const RequestId queued = engine.add_request(spec(10, 5), kStart);
  std::vector<EngineEvent> events;
  engine.advance(kStart, &events);
  engine.abort_request(queued, at_ms(1));  // a waiting one
  CHECK(engine.num_waiting() == 0);
  engine.abort_request(first, at_ms(5));  // a running one, in the step in flight
  CHECK(engine.num_running() == 1);
  CHECK(engine.metrics().success_abort == 2);
  engine.abort_request(first, at_ms(6));  // unknown now: ignored
  CHECK(engine.metrics().success_abort == 2);
  const auto recorded = run_until_idle(engine);
  CHECK(of(recorded, first).empty());
  CHECK(recorded.size() == 5);
  CHECK(engine.kv_cache_usage() == 0.0);
}

TEST_CASE("engine: token accounting and histograms follow vLLM's definitions") {
  Engine engine(test_config(), kStart);
  RequestSpec stop = spec(20, 4);
  stop.finish_reason = FinishReason::kStop;
  engine.add_request(stop, kStart);
  engine.add_request(spec(8, 2), kStart);
  run_until_idle(engine);
  const EngineMetrics& m = engine.metrics();
  CHECK(m.prompt_tokens == 28);
  CHECK(m.generation_tokens == 6);
  CHECK(m.success_stop == 1);
  CHECK(m.success_length == 1);
  CHECK(m.time_to_first_token.count() == 2);
  CHECK(m.inter_token_latency.count() == 4);  // tokens after the first
  CHECK(m.e2e_latency.count() == 2);
  // Steps: 12.8 (28 prefill tokens), 12 (two decodes), 11, 11.
  CHECK(m.e2e_latency.sum() == doctest::Approx(0.0468 + 0.0248));
  CHECK(m.prefill_time.sum() == doctest::Approx(2 * 0.0128));
  CHECK(m.decode_time.sum() == doctest::Approx(0.034 + 0.012));
  CHECK(m.request_generation_tokens.sum() == 6);
  CHECK(m.request_prompt_tokens.sum() == 28);
  CHECK(m.iteration_tokens.sum() == 28 + 2 + 1 + 1);
}

TEST_CASE("engine: a pooling request finishes after its prefill with one event") {
  Engine engine(test_config(), kStart);
  const RequestId id = engine.add_request(spec(100, 0), kStart);
  const auto recorded = run_until_idle(engine);
  REQUIRE(recorded.size() == 1);
  CHECK(recorded[0].event.id == id);
  CHECK(recorded[0].event.tokens_done == 0);
  CHECK(recorded[0].event.finished);
  CHECK(recorded[0].at == at_ms(20));
  CHECK(engine.metrics().generation_tokens == 0);
  CHECK(engine.metrics().prompt_tokens == 100);
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
