// Resolution of static endpoints into pool members: selector subset matching, host:port
// overriding targetPorts, one endpoint per target port, keys and names.

#include <doctest/doctest.h>

#include <set>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

namespace {
const std::string kEndpoints = R"(apiVersion: infergate.io/v1alpha1
kind: ProxyConfig
metadata: {name: eps}
spec:
  endpoints:
  - {name: a, address: 10.0.0.1, labels: {app: llama, tier: gold}}
  - {name: b, address: "10.0.0.2:9999", labels: {app: llama}}
  - {name: c, address: "fd00::3", labels: {app: llama, tier: gold, zone: x}}
  - {name: d, address: vllm.local, labels: {app: qwen}}
  - {name: e, address: 10.0.0.5, labels: {tier: gold}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: gold}
spec:
  selector: {matchLabels: {app: llama, tier: gold}}
  targetPorts: [{number: 8000}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: dp, namespace: ml}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 3000}, {number: 3002}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: qwen}
spec: {selector: {app: qwen}, targetPortNumber: 8000}
)";

std::vector<std::string> keys(const Snapshot& s) {
  std::vector<std::string> out;
  for (const auto& e : s.endpoints) out.push_back(e.key);
  return out;
}
}  // namespace

TEST_CASE("endpoints: selector subset, host:port override, several target ports") {
  auto s = load_ok(kEndpoints);
  CHECK(keys(*s) == std::vector<std::string>{
                        // gold: a and c carry app=llama and tier=gold (c has more labels)
                        "default/gold|a|10.0.0.1:8000",
                        "default/gold|c|[fd00::3]:8000",
                        // dp: every app=llama endpoint on both ports, except b, whose address
                        // has its own port
                        "ml/dp|a|10.0.0.1:3000",
                        "ml/dp|a|10.0.0.1:3002",
                        "ml/dp|b|10.0.0.2:9999",
                        "ml/dp|c|[fd00::3]:3000",
                        "ml/dp|c|[fd00::3]:3002",
                        // qwen: the DNS name, resolved later by the proxy
                        "default/qwen|d|vllm.local:8000",
                    });
  const auto& eps = s->endpoints;
  CHECK(eps[0].name == "a");  // one target port: no suffix
  CHECK(eps[0].pool == "default/gold");
  CHECK(eps[0].host == "10.0.0.1");
  CHECK(eps[0].port == 8000);
  CHECK(eps[0].labels.at("tier") == "gold");
  CHECK(eps[2].name == "a:3000");  // several target ports: ":port" suffix
  CHECK(eps[3].name == "a:3002");
  CHECK(eps[4].name == "b");  // the address gave the port: no suffix
  CHECK(eps[4].port == 9999);
  CHECK(eps[5].host == "fd00::3");
  CHECK(eps[7].host == "vllm.local");
}

TEST_CASE("endpoints: a pool that selects nothing and an unused endpoint are warnings") {
  LoadResult r = load_string(kEndpoints + R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: empty}
spec:
  selector: {matchLabels: {app: llama, tier: platinum}}
  targetPorts: [{number: 8000}]
)",
                             "eps.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  auto w = warnings(r);
  CHECK_MESSAGE(w.size() == 2, joined(w));
  CHECK_HAS(w,
            "eps.yaml:10:5: warning: ProxyConfig eps: spec.endpoints: endpoint \"e\" (labels "
            "tier=gold) is selected by no InferencePool");
  CHECK_HAS(w,
            "eps.yaml:31:1: warning: InferencePool default/empty: selects no endpoint: no entry of "
            "spec.endpoints in ProxyConfig has the labels app=llama,tier=platinum");
}

TEST_CASE("endpoints: keys are unique and stable across loads") {
  auto a = load_ok(kEndpoints);
  auto b = load_ok(kEndpoints);
  CHECK(keys(*a) == keys(*b));
  std::set<std::string> unique;
  for (const auto& k : keys(*a)) CHECK(unique.insert(k).second);
}
