#pragma once
// Renders /metrics the way vLLM V1 exposes it through prometheus_client (text format 0.0.4):
// registration order, HELP/TYPE per family, labels sorted by name, `engine="0"`, float values
// written as prometheus_client's floatToGoString ("1.0", "1.7382173358407154e+09"), counters as
// `_total` plus a `_created` gauge family, histograms as buckets, `_count`, `_sum`, then a
// `_created` gauge family. Sans-I/O: the caller gathers a snapshot.

#include "sim/engine.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace infergate::sim {

struct MetricsSnapshot {
  std::string_view model_name;  // vLLM labels everything with the first served name
  double running = 0;
  double waiting = 0;
  double kv_cache_usage = 0;
  const EngineMetrics* engine = nullptr;

  int64_t block_size = 16;
  int64_t num_gpu_blocks = 0;
  std::optional<int64_t> num_gpu_blocks_override;
  bool enable_prefix_caching = true;
  bool show_hidden_metrics = false;  // --show-hidden-metrics-for-version: deprecated families

  bool lora_enabled = false;
  int64_t max_lora = 0;
  std::span<const LoraInfoSeries> lora_series;

  // Engine time -> unix time: unix = unix_now - (steady_now - t).
  TimePoint steady_now;
  double unix_now = 0;
  double created_unix = 0;  // when the metric children were created (start-up)
};

std::string render_metrics(const MetricsSnapshot& snapshot);

// prometheus_client's floatToGoString: Python repr, switched to Go's exponent form for values of
// 1e6 and above ("1.5e+06"), "+Inf"/"-Inf"/"NaN".
void append_prometheus_value(std::string& out, double value);

}  // namespace infergate::sim
