// libFuzzer entry point for the Prometheus text parser and the engine mappings (built only with
// clang, see metrics/CMakeLists.txt). Seed corpus: tests/fuzz/corpus/prometheus/.
//   build/<dir>/metrics/prometheus_fuzz tests/fuzz/corpus/prometheus -max_total_time=60
// The deterministic stand-in that runs in CI is tests/unit/metrics/robustness_test.cpp.

#include "metrics/engine_mapping.h"
#include "metrics/prometheus_parser.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using infergate::EngineType;
using infergate::metrics::ParsedMetrics;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ParsedMetrics parsed;
  for (const bool openmetrics : {false, true}) {
    infergate::metrics::parse_prometheus_text(text, parsed, {.openmetrics = openmetrics});
    // Every view must lie inside the input or the result's own storage; touching each byte
    // lets ASan check that.
    size_t bytes = 0;
    for (const auto& s : parsed.samples) {
      bytes += s.name.size();
      for (const auto& l : parsed.labels_of(s)) bytes += l.name.size() + l.value.size();
      for (const char c : s.name) bytes += static_cast<unsigned char>(c) & 1u;
    }
    if (parsed.errors.size() > parsed.error_count) std::abort();
    for (const EngineType type :
         {EngineType::kAuto, EngineType::kVllm, EngineType::kSglang, EngineType::kTrtllm}) {
      const infergate::EngineMetrics m = infergate::metrics::map_engine_metrics(parsed, type);
      if (!(m.waiting >= 0) || !(m.running >= 0) || !(m.kv_cache_usage >= 0) ||
          !(m.kv_cache_usage <= 1) || std::isinf(m.waiting) || std::isinf(m.running)) {
        std::abort();
      }
    }
    (void)bytes;
  }
  return 0;
}
