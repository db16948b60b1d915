#pragma once
// Pool saturation, GIE's utilization detector (SPEC §6): the mean over the pool's ready
// endpoints of max(waiting / queueDepthThreshold, kv / kvCacheThreshold), where an endpoint
// whose metrics are missing, not reporting the load figures, or older than the staleness
// threshold counts as 1.0; an empty pool is 1.0. The pool is saturated when the mean is >= 1.0,
// and a request with priority < 0 is then shed (429). It reads the scraped figures as they are
// (no in-flight correction), exactly as GIE does.
//
// The same object answers the per-endpoint test of GIE's detector-as-filter: an endpoint may
// take more work while its metrics are fresh and waiting < q*(1+headroom), kv < kv*(1+headroom)
// (the `default` profile adds prefixHeadroom * the share of the prompt the endpoint holds to the
// queue limit's headroom).
//
// Immutable after construction; thread-safe. Sans-I/O: ages come in the views.

#include <span>

#include "routing/scheduler_config.h"
#include "routing/scheduling_types.h"

namespace infergate::routing {

class SaturationDetector {
 public:
  explicit SaturationDetector(SaturationConfig config = {}) : config_(config) {}

  // Unready candidates are not part of the pool (GIE lists ready pods only).
  double saturation(std::span<const EndpointView> endpoints) const;
  bool saturated(std::span<const EndpointView> endpoints) const {
    return saturation(endpoints) >= 1.0;
  }
  // SPEC §6: sheddable (priority < 0) while saturated.
  bool should_shed(std::span<const EndpointView> endpoints, int priority) const {
    return priority < 0 && saturated(endpoints);
  }

  // Missing, not reporting the load figures (EngineMetrics::reporting()), or too old.
  bool stale(const EndpointView& e) const {
    return e.metrics == nullptr || !e.metrics->reporting() ||
           e.metrics_age > config_.metrics_staleness;
  }
  // The filter's verdict on given figures (the caller chooses raw or corrected ones).
  // `prefix_fraction` (0..1) is the share of the request's prompt the endpoint holds: it raises
  // the queue limit by prefix_headroom * prefix_fraction.
  FilterReason over_limit(double waiting, double kv, double prefix_fraction = 0) const {
    if (waiting >= config_.queue_depth_threshold *
                       (1.0 + config_.headroom + config_.prefix_headroom * prefix_fraction))
      return FilterReason::kSaturatedQueue;
    if (kv >= config_.kv_cache_threshold * (1.0 + config_.headroom))
      return FilterReason::kSaturatedKvCache;
    return FilterReason::kNone;
  }

  const SaturationConfig& config() const { return config_; }

 private:
  SaturationConfig config_;
};

}  // namespace infergate::routing
