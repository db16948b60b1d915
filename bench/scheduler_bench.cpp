// Cost of one scheduling decision, prefix-index update included, single thread.
//
//   bench_scheduler --benchmark_min_time=2
//
// Each iteration: pick a prompt from a mixed workload (conversations over shared system
// prompts, four LoRA adapters and the base model), schedule it over the pool with the default
// profile, record the dispatch in the prefix index, bump the chosen endpoint's since-scrape
// counters (reset every 32 decisions, as a 50 ms scrape would). Every iteration is timed on its
// own (manual time), so the report carries the median and the 99th percentile as counters.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/engine_metrics.h"
#include "routing/prefix_index.h"
#include "routing/rng.h"
#include "routing/scheduler.h"

namespace {

using infergate::EngineMetrics;
using namespace infergate::routing;

std::string text(size_t bytes, uint64_t seed) {
  std::string s(bytes, ' ');
  Rng rng(seed);
  for (auto& c : s) c = static_cast<char>('a' + rng.below(26));
  return s;
}

struct Workload {
  std::deque<EngineMetrics> metrics;
  std::vector<EndpointView> views;
  std::vector<std::string> prompts;
  std::vector<std::string> models;
};

Workload make_workload(size_t endpoints, size_t prompt_bytes) {
  Workload w;
  Rng rng(7);
  const std::vector<std::string> adapters = {"lora-sql", "lora-chat", "lora-code", "lora-math"};
  for (size_t i = 0; i < endpoints; ++i) {
    EngineMetrics m;
    m.waiting = static_cast<double>(rng.below(4));
    m.running = static_cast<double>(8 + rng.below(24));
    m.kv_cache_usage = 0.1 + 0.6 * rng.uniform();
    m.max_lora = 4;
    m.has_lora_info = true;
    for (const auto& a : adapters)
      if (rng.below(2)) m.running_adapters.push_back(a);
    m.block_size = 16;
    m.num_gpu_blocks = 31250;
    w.metrics.push_back(std::move(m));
    EndpointView v;
    v.id = static_cast<uint32_t>(i);
    v.key = 1000 + i;
    v.metrics = &w.metrics.back();
    v.metrics_age = std::chrono::milliseconds(rng.below(60));
    v.in_flight = static_cast<int64_t>(rng.below(32));
    w.views.push_back(v);
  }
  // 16 system prompts (half the prompt), 256 conversations over them.
  std::vector<std::string> systems;
  for (int s = 0; s < 16; ++s) systems.push_back(text(prompt_bytes / 2, 100 + s));
  for (int c = 0; c < 256; ++c)
    w.prompts.push_back(systems[c % 16] + text(prompt_bytes - prompt_bytes / 2, 1000 + c));
  w.models = {"llama", "lora-sql", "lora-chat", "lora-code", "lora-math"};
  return w;
}

void BM_Decision(benchmark::State& state) {
  const size_t endpoints = static_cast<size_t>(state.range(0));
  const size_t prompt_bytes = static_cast<size_t>(state.range(1));
  Workload w = make_workload(endpoints, prompt_bytes);
  auto index = std::make_shared<PrefixIndex>(size_t{64} << 20);
  const Scheduler scheduler(SchedulerConfig::defaults_for(Profile::kDefault), index);
  Rng rng(42);
  SchedulingState sched_state;

  // Warm the index as a running gateway would have it.
  for (int i = 0; i < 4096; ++i) {
    RequestFeatures r;
    r.model = w.models[i % w.models.size()];
    r.prompt = w.prompts[rng.below(w.prompts.size())];
    sched_state.reset();
    const Decision d = scheduler.schedule(w.views, r, sched_state, rng);
    scheduler.record_dispatch(w.views[d.index], r, sched_state);
  }

  std::vector<double> ns;
  ns.reserve(1 << 20);
  uint64_t n = 0;
  for (auto _ : state) {
    RequestFeatures r;
    r.model = w.models[rng.below(w.models.size())];
    r.prompt = w.prompts[rng.below(w.prompts.size())];
    const auto t0 = std::chrono::steady_clock::now();
    sched_state.reset();
    const Decision d = scheduler.schedule(w.views, r, sched_state, rng);
    scheduler.record_dispatch(w.views[d.index], r, sched_state);
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(d);
    const double elapsed = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(elapsed);
    ns.push_back(elapsed * 1e9);
    EndpointView& chosen = w.views[d.index];
    ++chosen.dispatched_since_scrape;
    chosen.prompt_bytes_since_scrape += static_cast<int64_t>(prompt_bytes);
    if (++n % 32 == 0)
      for (auto& v : w.views) v.dispatched_since_scrape = v.prompt_bytes_since_scrape = 0;
  }
  if (!ns.empty()) {
    std::sort(ns.begin(), ns.end());
    auto pct = [&](double p) { return ns[static_cast<size_t>(p * (ns.size() - 1))]; };
    state.counters["p50_us"] = pct(0.50) / 1e3;
    state.counters["p99_us"] = pct(0.99) / 1e3;
    state.counters["max_us"] = ns.back() / 1e3;
  }
}

}  // namespace

BENCHMARK(BM_Decision)
    ->ArgNames({"endpoints", "prompt_bytes"})
    ->ArgsProduct({{8, 64, 256}, {4096, 32768}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
