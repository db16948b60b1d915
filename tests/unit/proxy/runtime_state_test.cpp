#include <doctest/doctest.h>
#include <simdjson.h>

#include "proxy/admin_server.h"
#include "proxy/runtime_state.h"

using namespace infergate;

namespace {

config::SnapshotPtr make_snapshot(std::vector<std::string> endpoint_hosts) {
  auto s = std::make_shared<config::Snapshot>();
  config::InferencePool pool;
  pool.name = "llama";
  pool.namespace_ = "default";
  pool.target_ports = {8000};
  s->pools.push_back(pool);
  for (size_t i = 0; i < endpoint_hosts.size(); ++i) {
    config::Endpoint ep;
    ep.name = "pod-" + std::to_string(i);
    ep.pool = "default/llama";
    ep.host = endpoint_hosts[i];
    ep.port = 8000;
    ep.key = ep.pool + "|" + ep.name + "|" + ep.host + ":8000";
    s->endpoints.push_back(ep);
  }
  config::ModelRoute m;
  m.model_name = "food \"review\"";
  m.pool = "default/llama";
  m.targets = {{"food-review-1", 1}};
  s->models.push_back(m);
  s->models.push_back(m);  // duplicates are listed once
  return s;
}

}  // namespace

TEST_CASE("StateBuilder keeps endpoint counters across reloads") {
  proxy::StateBuilder builder;
  auto first = builder.build(make_snapshot({"10.0.0.1", "10.0.0.2"}));
  REQUIRE(first->pools.size() == 1);
  REQUIRE(first->pools[0].endpoints.size() == 2);
  first->pools[0].endpoints[0]->in_flight = 3;
  const auto id0 = first->pools[0].endpoints[0]->id;

  // pod-1 moves to a new address: a new endpoint; pod-0 stays: same counters.
  auto second = builder.build(make_snapshot({"10.0.0.1", "10.0.0.3"}));
  CHECK(second->generation == first->generation + 1);
  CHECK(second->pools[0].endpoints[0].get() == first->pools[0].endpoints[0].get());
  CHECK(second->pools[0].endpoints[0]->in_flight == 3);
  CHECK(second->pools[0].endpoints[0]->id == id0);
  CHECK(second->pools[0].endpoints[1].get() != first->pools[0].endpoints[1].get());
  CHECK(second->pools[0].endpoints[1]->id != first->pools[0].endpoints[1]->id);
  CHECK(second->find_pool("default/llama") == &second->pools[0]);
  CHECK(second->find_pool("default/other") == nullptr);
}

TEST_CASE("/v1/models body lists each model once, escaped") {
  proxy::StateBuilder builder;
  auto state = builder.build(make_snapshot({"10.0.0.1"}));
  simdjson::dom::parser parser;
  auto doc = parser.parse(state->models_json);
  REQUIRE(doc.error() == simdjson::SUCCESS);
  CHECK(std::string_view(doc["object"]) == "list");
  simdjson::dom::array data = doc["data"];
  CHECK(data.size() == 1);
  CHECK(std::string_view(data.at(0)["id"]) == "food \"review\"");
}

TEST_CASE("admin JSON documents parse") {
  proxy::StateBuilder builder;
  auto state = builder.build(make_snapshot({"10.0.0.1", "10.0.0.2"}));
  simdjson::dom::parser parser;
  auto eps = parser.parse(proxy::AdminServer::endpoints_json(*state, nullptr));
  REQUIRE(eps.error() == simdjson::SUCCESS);
  simdjson::dom::array list = eps["endpoints"];
  CHECK(list.size() == 2);
  CHECK(std::string_view(list.at(1)["address"]) == "10.0.0.2:8000");
  CHECK(int64_t(list.at(0)["in_flight"]) == 0);

  simdjson::dom::parser parser2;
  auto cfg = parser2.parse(proxy::AdminServer::config_json(*state->config));
  REQUIRE(cfg.error() == simdjson::SUCCESS);
  simdjson::dom::array pools = cfg["pools"];
  CHECK(pools.size() == 1);
}
