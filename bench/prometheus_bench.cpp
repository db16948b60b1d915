// Cost of one scrape's CPU work on the scraper thread: parsing a real vLLM /metrics page and
// mapping it to EngineMetrics (docs/benchmarks.md, "Scrape parsing cost").
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include "metrics/engine_mapping.h"
#include "metrics/prometheus_parser.h"

namespace {

std::string read_fixture(const char* name) {
  std::ifstream f(std::string(INFERGATE_BENCH_FIXTURES) + "/" + name);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void BM_ParsePage(benchmark::State& state, const char* name) {
  const std::string text = read_fixture(name);
  if (text.empty()) {
    state.SkipWithError("fixture not found");
    return;
  }
  infergate::metrics::ParsedMetrics parsed;
  for (auto _ : state) {
    infergate::metrics::parse_prometheus_text(text, parsed);
    benchmark::DoNotOptimize(parsed.samples.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["samples"] = static_cast<double>(parsed.samples.size());
}

void BM_ParseAndMap(benchmark::State& state, const char* name) {
  const std::string text = read_fixture(name);
  if (text.empty()) {
    state.SkipWithError("fixture not found");
    return;
  }
  infergate::metrics::ParsedMetrics parsed;
  for (auto _ : state) {
    infergate::metrics::parse_prometheus_text(text, parsed);
    auto m = infergate::metrics::map_engine_metrics(parsed, infergate::EngineType::kAuto);
    benchmark::DoNotOptimize(m.waiting);
  }
}

BENCHMARK_CAPTURE(BM_ParsePage, vllm_full, "vllm-v0-metrics-full.txt");
BENCHMARK_CAPTURE(BM_ParsePage, sglang, "sglang-metrics.txt");
BENCHMARK_CAPTURE(BM_ParseAndMap, vllm_full, "vllm-v0-metrics-full.txt");

}  // namespace

BENCHMARK_MAIN();
