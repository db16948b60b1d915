#include "routing/saturation_detector.h"

#include <algorithm>

namespace infergate::routing {

double SaturationDetector::saturation(std::span<const EndpointView> endpoints) const {
  double total = 0;
  size_t n = 0;
  for (const auto& e : endpoints) {
    if (!e.ready) continue;
    ++n;
    if (stale(e)) {
      total += 1.0;
      continue;
    }
    const double q = e.metrics->waiting / config_.queue_depth_threshold;
    const double kv = e.metrics->kv_cache_usage / config_.kv_cache_threshold;
    total += std::max(q, kv);
  }
  return n == 0 ? 1.0 : total / static_cast<double>(n);
}

}  // namespace infergate::routing
