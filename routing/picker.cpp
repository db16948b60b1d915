#include "routing/picker.h"

namespace infergate::routing {
namespace {

class SchedulerPicker final : public Picker {
 public:
  explicit SchedulerPicker(Profile p) : scheduler_(SchedulerConfig::defaults_for(p)) {}

  std::optional<size_t> pick(std::span<const EndpointView> candidates,
                             const RequestFeatures& request, Rng& rng) override {
    state_.reset();
    const Decision d = scheduler_.schedule(candidates, request, state_, rng);
    if (!d.picked()) return std::nullopt;
    return d.index;
  }

  std::string_view name() const override { return scheduler_.profile_name(); }

 private:
  Scheduler scheduler_;
  SchedulingState state_;
};

}  // namespace

std::unique_ptr<Picker> make_picker(std::string_view profile) {
  const auto p = parse_profile(profile);
  if (!p) return nullptr;
  return std::make_unique<SchedulerPicker>(*p);
}

}  // namespace infergate::routing
