#pragma once
// GIE v0.3's scheduler, the "filter tree" (gie-legacy profile), re-implemented from its
// published algorithm:
//
//   critical request?
//   ├─ yes: low queueing (waiting < queueingThresholdLoRA)?
//   │   ├─ some pass: LoRA affinity → least queuing → least KV cache
//   │   └─ none pass: least queuing → LoRA affinity → least KV cache   (on all candidates)
//   └─ no:  has capacity (waiting <= queueThresholdCritical && kv <= kvCacheThreshold)?
//       ├─ some pass: least queuing → LoRA affinity → least KV cache
//       └─ none pass: drop the request (429)
//   then a uniformly random pick among the survivors.
//
// A step that leaves nothing hands its own input to the next step. Least queuing / least KV
// keep the candidates within (max - min) / n of the minimum (integer division for the queue).
// LoRA affinity splits candidates into "adapter active" (running or waiting on it) and "free
// slot" (fewer adapters than max_lora); with both non-empty it keeps the active group with
// probability loraAffinityThreshold (0.999), else the free group. Missing metrics read as 0.
//
// Immutable; thread-safe.

#include <span>
#include <vector>

#include "routing/rng.h"
#include "routing/scheduler_config.h"
#include "routing/scheduling_types.h"

namespace infergate::routing {

class LegacyFilterTree {
 public:
  explicit LegacyFilterTree(LegacyConfig config) : config_(config) {}

  // `set`: in, the indexes of the ready candidates; out, the survivors (non-empty unless shed).
  // Returns false when the request is dropped. `scratch` is working memory. Fills the trace's
  // path and each candidate's filter reason when a trace is given (trace->candidates sized).
  bool run(std::span<const EndpointView> candidates, const RequestFeatures& request, Rng& rng,
           std::vector<uint32_t>& set, std::vector<uint32_t>& scratch, DecisionTrace* trace) const;

  bool critical(const RequestFeatures& request) const {
    return request.priority >= config_.critical_priority;
  }
  const LegacyConfig& config() const { return config_; }

 private:
  LegacyConfig config_;
};

}  // namespace infergate::routing
