#include "routing/picker.h"

#include <doctest/doctest.h>

#include <map>
#include <vector>

using infergate::routing::EndpointView;
using infergate::routing::make_picker;
using infergate::routing::RequestFeatures;
using infergate::routing::Rng;

TEST_CASE("make_picker knows every profile name and nothing else") {
  for (const auto name : infergate::routing::kProfileNames) {
    auto p = make_picker(name);
    REQUIRE(p != nullptr);
    CHECK(p->name() == name);
  }
  CHECK(make_picker("least_request") == nullptr);
  CHECK(make_picker("") == nullptr);
}

TEST_CASE("every profile picks something from a plain pool through the Picker interface") {
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
