#include "routing/model_resolver.h"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>

using infergate::config::Criticality;
using infergate::config::InferenceObjective;
using infergate::config::InferencePool;
using infergate::config::ModelRoute;
using infergate::config::Snapshot;
using infergate::config::WeightedTarget;
using infergate::routing::ModelResolver;
using infergate::routing::Resolution;
using infergate::routing::Rng;

namespace {

InferencePool pool(std::string name) {
  InferencePool p;
  p.name = std::move(name);
  p.namespace_ = "default";
  return p;
}

ModelRoute route(std::string model, std::string pool_key, std::vector<WeightedTarget> targets = {},
                 std::optional<Criticality> criticality = std::nullopt) {
  ModelRoute r;
  r.model_name = std::move(model);
  r.pool = std::move(pool_key);
  r.targets = std::move(targets);
  r.criticality = criticality;
  return r;
}

InferenceObjective objective(std::string name, std::string pool_key, int priority) {
  InferenceObjective o;
  o.name = std::move(name);
  o.namespace_ = "default";
  o.pool = std::move(pool_key);
  o.priority = priority;
  return o;
}

// Two pools: "a" serves llama (critical) and a weighted rewrite "chat"; "b" serves qwen.
std::shared_ptr<Snapshot> two_pools() {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a"), pool("b")};
  s->models = {
      route("llama", "default/a", {}, Criticality::kCritical),
      route("chat", "default/a", {{"llama-v1", 80}, {"llama-v2", 20}}),
      route("qwen", "default/b", {}, Criticality::kSheddable),
      route("plain", "default/b", {}, Criticality::kStandard),
      route("llama", "default/b", {{"llama-on-b", 1}}),  // same name in a later pool: ignored
  };
  return s;
}

}  // namespace

TEST_CASE("exact route: pool, unchanged model, route pointer") {
  const auto snap = two_pools();
  ModelResolver resolver(snap);
  Rng rng(1);
  const Resolution r = resolver.resolve("llama", "", rng);
  CHECK(r.status == Resolution::Status::kOk);
  CHECK(r.pool == "default/a");
  CHECK(r.target_model == "llama");
  REQUIRE(r.route != nullptr);
  CHECK(r.route == &snap->models[0]);  // first in snapshot order, not pool b's
  CHECK(r.priority == 1);
  CHECK_FALSE(r.sheddable());
}

TEST_CASE("rewrite route draws a target") {
  ModelResolver resolver(two_pools());
  Rng rng(7);
  const Resolution r = resolver.resolve("chat", "", rng);
  CHECK(r.status == Resolution::Status::kOk);
  CHECK(r.pool == "default/a");
  CHECK((r.target_model == "llama-v1" || r.target_model == "llama-v2"));
  CHECK(r.route->model_name == "chat");
}

TEST_CASE("single target rewrite is deterministic") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a"), pool("b")};
  s->models = {route("alias", "default/b", {{"real", 5}})};
  ModelResolver resolver(s);
  Rng rng(3);
  for (int i = 0; i < 100; ++i) CHECK(resolver.resolve("alias", "", rng).target_model == "real");
}

TEST_CASE("no route with one pool passes through") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("only")};
  s->models = {route("known", "default/only")};
  ModelResolver resolver(s);
  Rng rng;
  const Resolution r = resolver.resolve("anything/else", "", rng);
  CHECK(r.status == Resolution::Status::kOk);
  CHECK(r.pool == "default/only");
  CHECK(r.target_model == "anything/else");
  CHECK(r.route == nullptr);
  CHECK(r.priority == 0);
}

TEST_CASE("no route with two pools is model_not_found") {
  ModelResolver resolver(two_pools());
  Rng rng;
  const Resolution r = resolver.resolve("unknown", "", rng);
  CHECK(r.status == Resolution::Status::kModelNotFound);
  CHECK(r.route == nullptr);
  CHECK(resolver.resolve("", "", rng).status == Resolution::Status::kModelNotFound);
  CHECK(resolver.resolve("LLAMA", "", rng).status == Resolution::Status::kModelNotFound);
}

TEST_CASE("no pools at all is model_not_found") {
  ModelResolver resolver(std::make_shared<Snapshot>());
  Rng rng;
  CHECK(resolver.resolve("x", "", rng).status == Resolution::Status::kModelNotFound);
}

TEST_CASE("weighted split follows the weights") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a"), pool("b")};
  s->models = {
      route("m", "default/a", {{"t50", 50}, {"t30", 30}, {"t15", 15}, {"t5", 5}, {"t0", 0}})};
  ModelResolver resolver(s);
  Rng rng(12345);
  constexpr int kDraws = 20000;
  std::map<std::string, int> counts;
  for (int i = 0; i < kDraws; ++i) ++counts[resolver.resolve("m", "", rng).target_model];
  const std::map<std::string, double> expected = {
      {"t50", 0.50}, {"t30", 0.30}, {"t15", 0.15}, {"t5", 0.05}};
  CHECK(counts.count("t0") == 0);  // weight 0: never chosen
  for (const auto& [name, share] : expected) {
    const double got = static_cast<double>(counts[name]) / kDraws;
    INFO(name << " got " << got << " expected " << share);
    CHECK(std::abs(got - share) <= 0.02);
  }
}

TEST_CASE("all-zero weights degrade to uniform") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a"), pool("b")};
  s->models = {route("m", "default/a", {{"x", 0}, {"y", 0}})};
  ModelResolver resolver(s);
  Rng rng(5);
  std::map<std::string, int> counts;
  for (int i = 0; i < 20000; ++i) ++counts[resolver.resolve("m", "", rng).target_model];
  CHECK(std::abs(counts["x"] / 20000.0 - 0.5) <= 0.02);
  CHECK(std::abs(counts["y"] / 20000.0 - 0.5) <= 0.02);
}

TEST_CASE("priority from criticality") {
  ModelResolver resolver(two_pools());
  Rng rng;
  CHECK(resolver.resolve("llama", "", rng).priority == 1);    // Critical
  CHECK(resolver.resolve("plain", "", rng).priority == 0);    // Standard
  CHECK(resolver.resolve("chat", "", rng).priority == 0);     // unset
  const Resolution shed = resolver.resolve("qwen", "", rng);  // Sheddable
  CHECK(shed.priority == -1);
  CHECK(shed.sheddable());
}

TEST_CASE("priority from the objective header") {
  auto s = two_pools();
  s->objectives = {
      objective("batch", "default/a", -5),
      objective("batch", "default/b", -7),
      objective("interactive", "default/b", 9),
      objective("zero", "default/a", 0),
  };
  ModelResolver resolver(s);
  Rng rng;
  SUBCASE("objective beats criticality") {
    CHECK(resolver.resolve("llama", "batch", rng).priority == -5);  // Critical model, pool a
    CHECK(resolver.resolve("qwen", "zero", rng).priority == 0);     // Sheddable model
  }
  SUBCASE("same name: the one of the resolved pool wins") {
    CHECK(resolver.resolve("qwen", "batch", rng).priority == -7);   // pool b
    CHECK(resolver.resolve("llama", "batch", rng).priority == -5);  // pool a
  }
  SUBCASE("name only defined for another pool still applies") {
    CHECK(resolver.resolve("llama", "interactive", rng).priority == 9);
  }
  SUBCASE("unknown objective falls back to criticality") {
    CHECK(resolver.resolve("llama", "nope", rng).priority == 1);
    CHECK(resolver.resolve("qwen", "nope", rng).priority == -1);
    CHECK(resolver.resolve("chat", "nope", rng).priority == 0);
  }
}

TEST_CASE("objective applies to pass-through too") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("only")};
  s->objectives = {objective("low", "default/only", -1)};
  ModelResolver resolver(s);
  Rng rng;
  const Resolution r = resolver.resolve("whatever", "low", rng);
  CHECK(r.status == Resolution::Status::kOk);
  CHECK(r.priority == -1);
  CHECK(r.sheddable());
}

TEST_CASE("catch-all rewrite rule applies to unmatched models of the single pool") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a")};
  ModelRoute fallback = route("", "default/a", {{"base-v2", 1}});
  fallback.catch_all = true;
  s->models = {route("llama", "default/a"), fallback};
  ModelResolver resolver(s);
  Rng rng(7);
  const auto matched = resolver.resolve("llama", "", rng);
  CHECK(matched.target_model == "llama");
  const auto other = resolver.resolve("anything-else", "", rng);
  REQUIRE(other.status == Resolution::Status::kOk);
  CHECK(other.target_model == "base-v2");
  CHECK(other.route == &s->models[1]);
  // The catch-all is not a literal route for the empty model name.
  const auto empty = resolver.resolve("", "", rng);
  CHECK(empty.target_model == "base-v2");
}

TEST_CASE("a route's own priority (transitional InferenceObjective shape) beats criticality") {
  auto s = std::make_shared<Snapshot>();
  s->pools = {pool("a")};
  ModelRoute r = route("m", "default/a", {}, Criticality::kCritical);
  r.priority = -3;
  s->models = {r};
  ModelResolver resolver(s);
  Rng rng(1);
  CHECK(resolver.resolve("m", "", rng).priority == -3);
}
