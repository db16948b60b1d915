#include "routing/picker.h"

namespace infergate::routing {
namespace {

// Fewest gateway in-flight requests among ready candidates; ties broken uniformly at random so
// that equal endpoints share load instead of the first one taking every burst.
class LeastRequestPicker final : public Picker {
 public:
  std::optional<size_t> pick(std::span<const EndpointView> candidates,
                             const RequestFeatures& /*request*/, Rng& rng) override {
    int64_t least = 0;
    size_t ties = 0;
    size_t first = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const auto& c = candidates[i];
      if (!c.ready) continue;
      if (ties == 0 || c.in_flight < least) {
        least = c.in_flight;
        ties = 1;
        first = i;
      } else if (c.in_flight == least) {
        ++ties;
      }
    }
    if (ties == 0) return std::nullopt;
    if (ties == 1) return first;
    // One draw, then walk to the chosen tied candidate.
    uint64_t nth = rng.below(ties);
    for (size_t i = first; i < candidates.size(); ++i) {
      const auto& c = candidates[i];
      if (c.ready && c.in_flight == least && nth-- == 0) return i;
    }
    return first;  // unreachable: nth < ties
  }

  std::string_view name() const override { return "least-request"; }
};

}  // namespace

std::unique_ptr<Picker> make_picker(std::string_view profile) {
  if (profile == "least-request") return std::make_unique<LeastRequestPicker>();
  return nullptr;
}

}  // namespace infergate::routing
