#pragma once
// Engine mappings (SPEC §7): parsed /metrics samples -> engine-independent EngineMetrics.
// docs/metrics-scraping.md lists the names read per engine and how series combine.
// Sans-I/O, pure functions; safe to call from any thread on distinct inputs.

#include "common/engine_metrics.h"
#include "metrics/prometheus_parser.h"

#include <optional>
#include <string>
#include <string_view>

namespace infergate::metrics {

// The label on an endpoint that selects its mapping (GIE's name).
inline constexpr std::string_view kEngineTypeLabel = "inference.networking.k8s.io/engine-type";

// "vllm", "sglang", "trtllm" (aliases "trtllm-serve", "tensorrt-llm", "triton-tensorrt-llm"),
// "auto"; ASCII case-insensitive. nullopt for anything else (an error for the caller to
// report). An absent label or pool setting means kAuto, not a call with "".
std::optional<EngineType> parse_engine_type(std::string_view name);
std::string_view engine_type_name(EngineType type);  // "auto", "vllm", "sglang", "trtllm"

// kAuto: the engine whose names appear first on the page (vllm:, sglang:, nv_trt_llm_ or
// trtllm_), or kVllm when none does (GIE's default engine).
EngineType detect_engine_type(const ParsedMetrics& parsed);

struct MappingOptions {
  // When set, series carrying a model_name label with another value are ignored (series
  // without the label still count). Off by default: a model server's load is all its series.
  std::string_view model_name;
};

// Maps one scrape. kAuto is resolved with detect_engine_type(). Never throws; what the page
// lacks is flagged in EngineMetrics::missing and left at 0.
EngineMetrics map_engine_metrics(const ParsedMetrics& parsed, EngineType type,
                                 const MappingOptions& options = {});

// "waiting, kv_cache_usage" for /debug/endpoints and logs; "" when nothing is missing.
std::string describe_missing(uint32_t missing);

}  // namespace infergate::metrics
