#pragma once
// Endpoint picking behind one small interface. The caller (proxy/) builds an immutable view of
// the candidate endpoints (already filtered: same pool, not yet tried for this request) and
// gets back an index into that span. Sans-I/O: no clock or socket here.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "routing/rng.h"

namespace infergate::routing {

// What the picker knows of one candidate. Grows with the scheduler issue (scraped metrics).
struct EndpointView {
  uint32_t id = 0;          // caller's identifier, returned untouched in the decision
  int64_t in_flight = 0;    // gateway's own in-flight requests to it (all workers)
  bool ready = true;
};

// The request's features that a decision may use.
struct RequestFeatures {
  std::string_view model;   // target model (after rewrite)
  int priority = 0;
  std::string_view prompt;  // raw prompt bytes (for prefix affinity later)
};

class Picker {
 public:
  virtual ~Picker() = default;
  // Returns an index into `candidates`, or nullopt when none is usable (all unready/empty).
  virtual std::optional<size_t> pick(std::span<const EndpointView> candidates,
                                     const RequestFeatures& request, Rng& rng) = 0;
  virtual std::string_view name() const = 0;
};

// Known profiles: "least-request". Returns null for an unknown name.
std::unique_ptr<Picker> make_picker(std::string_view profile);

}  // namespace infergate::routing
