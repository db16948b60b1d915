// The simple profiles through the Scheduler, on plain pools (no metrics): what the proxy calls.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "routing/scheduler.h"

using infergate::routing::DecisionStatus;
using infergate::routing::EndpointView;
using infergate::routing::parse_profile;
using infergate::routing::RequestFeatures;
using infergate::routing::Rng;
using infergate::routing::Scheduler;
using infergate::routing::SchedulerConfig;
using infergate::routing::SchedulingState;

namespace {

// One decision at a time, as the proxy makes them; nullopt when nothing is picked.
class Picker {
 public:
  explicit Picker(std::string_view profile)
      : scheduler_(SchedulerConfig::defaults_for(*parse_profile(profile))) {}
  std::optional<size_t> pick(std::span<const EndpointView> c, const RequestFeatures& r,
                             Rng& rng) const {
    SchedulingState state;
    const auto d = scheduler_.schedule(c, r, state, rng);
    if (d.status != DecisionStatus::kPicked) return std::nullopt;
    return d.index;
  }

 private:
  Scheduler scheduler_;
};

std::unique_ptr<Picker> make_picker(std::string_view profile) {
  if (!parse_profile(profile)) return nullptr;
  return std::make_unique<Picker>(profile);
}

}  // namespace

TEST_CASE("every profile name parses, and nothing else") {
  for (const auto name : infergate::routing::kProfileNames) {
    auto p = make_picker(name);
    REQUIRE(p != nullptr);
  }
  CHECK(make_picker("least_request") == nullptr);
  CHECK(make_picker("") == nullptr);
}

TEST_CASE("every profile picks something from a plain pool") {
  const std::vector<EndpointView> c = {{0, 3, true}, {1, 1, false}, {2, 2, true}};
  for (const auto name : infergate::routing::kProfileNames) {
    auto p = make_picker(name);
    Rng rng(9);
    for (int i = 0; i < 20; ++i) {
      const auto got = p->pick(c, RequestFeatures{}, rng);
      INFO(name);
      REQUIRE(got.has_value());
      CHECK(*got != 1u);  // unready
    }
  }
}

TEST_CASE("least-request picks the fewest in-flight") {
  auto p = make_picker("least-request");
  Rng rng(1);
  const std::vector<EndpointView> c = {{10, 5, true}, {11, 2, true}, {12, 7, true}};
  for (int i = 0; i < 50; ++i) CHECK(p->pick(c, RequestFeatures{}, rng) == 1u);
}

TEST_CASE("least-request skips unready endpoints") {
  auto p = make_picker("least-request");
  Rng rng(2);
  const std::vector<EndpointView> c = {{1, 0, false}, {2, 4, true}, {3, 1, false}, {4, 3, true}};
  for (int i = 0; i < 50; ++i) CHECK(p->pick(c, RequestFeatures{}, rng) == 3u);
}

TEST_CASE("least-request returns nullopt with nothing usable") {
  auto p = make_picker("least-request");
  Rng rng(3);
  CHECK_FALSE(p->pick({}, RequestFeatures{}, rng).has_value());
  const std::vector<EndpointView> c = {{1, 0, false}, {2, 0, false}};
  CHECK_FALSE(p->pick(c, RequestFeatures{}, rng).has_value());
}

TEST_CASE("least-request spreads ties over every tied candidate") {
  auto p = make_picker("least-request");
  Rng rng(4);
  // Tied at 1: indexes 1, 3, 5 (index 4 is tied but unready; 0 and 2 are busier).
  const std::vector<EndpointView> c = {{0, 3, true}, {1, 1, true},  {2, 2, true},
                                       {3, 1, true}, {4, 1, false}, {5, 1, true}};
  constexpr int kPicks = 30000;
  std::map<size_t, int> counts;
  for (int i = 0; i < kPicks; ++i) {
    auto got = p->pick(c, RequestFeatures{}, rng);
    REQUIRE(got.has_value());
    ++counts[*got];
  }
  CHECK(counts.size() == 3);
  for (size_t idx : {size_t{1}, size_t{3}, size_t{5}}) {
    INFO("index " << idx);
    CHECK(counts[idx] > kPicks / 3 - kPicks / 50);
    CHECK(counts[idx] < kPicks / 3 + kPicks / 50);
  }
}

TEST_CASE("least-request handles negative and huge counters") {
  auto p = make_picker("least-request");
  Rng rng(5);
  const std::vector<EndpointView> c = {{0, INT64_MAX, true}, {1, -1, true}};
  CHECK(p->pick(c, RequestFeatures{}, rng) == 1u);
  const std::vector<EndpointView> only_max = {{0, INT64_MAX, true}};
  CHECK(p->pick(only_max, RequestFeatures{}, rng) == 0u);
  const std::vector<EndpointView> max_after_unready = {{0, 0, false}, {1, INT64_MAX, true}};
  CHECK(p->pick(max_after_unready, RequestFeatures{}, rng) == 1u);
}
