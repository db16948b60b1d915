#pragma once
// The scheduler: one named profile (scheduler_config.h) applied to a view of the candidate
// endpoints of one pool. Sans-I/O: the caller passes the endpoint views (scraped metrics,
// metrics age, in-flight and since-scrape counters), the request features and its random
// source; the scheduler returns a Decision. The only shared mutable state it touches is the
// PrefixIndex (lock-free) and a round-robin counter (one relaxed atomic).
//
// Thread rules: a Scheduler is immutable after construction except for those atomics, so one
// instance (per pool and config generation) serves every worker concurrently. The Rng and the
// SchedulingState belong to the calling thread / request.
//
// Per request:
//   SchedulingState state;                            // lives as long as the request
//   Decision d = scheduler.schedule(views, features, state, rng, trace_or_null);
//   ... on d.picked(), when the request is sent to views[d.index]:
//   scheduler.record_dispatch(views[d.index], features, state);
// A retry calls schedule() again with the remaining candidates and the same state (the prompt
// is hashed once).

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "routing/legacy_filter_tree.h"
#include "routing/prefix_index.h"
#include "routing/rng.h"
#include "routing/saturation_detector.h"
#include "routing/scheduler_config.h"
#include "routing/scheduling_types.h"

namespace infergate::routing {

// What one request carries between its scheduling attempts and its dispatch: the prompt's block
// hashes, computed at most once per block size. Owned by the request; not shared.
class SchedulingState {
 public:
  void reset() {
    hashes_.clear();
    block_bytes_ = 0;
    hashed_ = false;
  }
  std::span<const uint64_t> block_hashes() const { return hashes_; }
  uint32_t block_bytes() const { return block_bytes_; }

 private:
  friend class Scheduler;
  std::vector<uint64_t> hashes_;
  uint32_t block_bytes_ = 0;
  bool hashed_ = false;
};

class Scheduler {
 public:
  // `index`: the process-wide prefix index, shared with other schedulers; null disables prefix
  // affinity (prefix scores are 0). The config is taken as is (see SchedulerConfig::defaults_for).
  explicit Scheduler(SchedulerConfig config, std::shared_ptr<PrefixIndex> index = nullptr);

  // Picks among `candidates` (the caller's order is kept in traces). Never allocates once the
  // calling thread has scheduled a pool of this size (thread-local scratch), except into the
  // state's hash vector on the request's first call and into a trace.
  Decision schedule(std::span<const EndpointView> candidates, const RequestFeatures& request,
                    SchedulingState& state, Rng& rng, DecisionTrace* trace = nullptr) const;

  // The request was sent to `chosen`: its prompt blocks now live in that endpoint's cache.
  // Updates the prefix index (no-op for profiles without prefix affinity).
  void record_dispatch(const EndpointView& chosen, const RequestFeatures& request,
                       SchedulingState& state) const;

  // Admission (SPEC §6), with this pool's thresholds.
  const SaturationDetector& saturation_detector() const { return detector_; }

  const SchedulerConfig& config() const { return config_; }
  std::string_view profile_name() const { return routing::profile_name(config_.profile); }
  const std::shared_ptr<PrefixIndex>& prefix_index() const { return index_; }

  // Block size in prompt bytes used for this candidate set (auto-tuned from the first
  // candidate whose metrics carry a cache block size).
  uint32_t block_bytes_for(std::span<const EndpointView> candidates) const;
  // An endpoint's LRU size in blocks for the prefix index.
  uint64_t capacity_for(const EndpointView& e) const;

 private:
  Decision schedule_scored(std::span<const EndpointView> candidates, const RequestFeatures& request,
                           SchedulingState& state, Rng& rng, DecisionTrace* trace) const;
  Decision schedule_legacy(std::span<const EndpointView> candidates, const RequestFeatures& request,
                           Rng& rng, DecisionTrace* trace) const;
  Decision schedule_simple(std::span<const EndpointView> candidates, Rng& rng,
                           DecisionTrace* trace) const;
  bool prefix_enabled() const { return index_ != nullptr && config_.weights.prefix > 0; }
  void ensure_hashes(std::span<const EndpointView> candidates, const RequestFeatures& request,
                     SchedulingState& state) const;

  SchedulerConfig config_;
  std::shared_ptr<PrefixIndex> index_;
  SaturationDetector detector_;
  LegacyFilterTree legacy_;
  // `default` corrects the scraped figures and filters saturated endpoints; gie-default does not.
  bool ours_ = false;
  mutable std::atomic<uint64_t> round_robin_{0};
};

}  // namespace infergate::routing
