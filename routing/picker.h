#pragma once
// The original one-call picking interface, kept for callers that do not need prefix affinity
// or traces: a Picker wraps a Scheduler (scheduler.h) of the named profile with no prefix
// index. New code should hold a shared Scheduler per pool and call schedule() /
// record_dispatch() (see scheduler.h); EndpointView and RequestFeatures live in
// scheduling_types.h.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "routing/rng.h"
#include "routing/scheduler.h"
#include "routing/scheduling_types.h"

namespace infergate::routing {

class Picker {
 public:
  virtual ~Picker() = default;
  // Returns an index into `candidates`, or nullopt when none is usable (all unready/empty, or
  // shed by gie-legacy).
  virtual std::optional<size_t> pick(std::span<const EndpointView> candidates,
                                     const RequestFeatures& request, Rng& rng) = 0;
  virtual std::string_view name() const = 0;
};

// Known profiles: kProfileNames (scheduler_config.h). Returns null for an unknown name.
std::unique_ptr<Picker> make_picker(std::string_view profile);

}  // namespace infergate::routing
