#pragma once
// Process-wide state shared by every worker: the published runtime state, the metrics, the
// drain flag. Everything here is safe to read from any thread.

#include <atomic>

#include "metrics/gateway_metrics.h"
#include "proxy/runtime_state.h"

namespace infergate::proxy {

struct MetricsSnapshot;

struct GatewayContext {
  StateHolder state;
  // The scraper's latest per-endpoint engine metrics (null until the first publication).
  std::atomic<std::shared_ptr<const MetricsSnapshot>> engine_metrics;
  metrics::GatewayMetrics metrics;
  std::atomic<bool> draining{false};
};

}  // namespace infergate::proxy
