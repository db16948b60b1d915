// summary(): the one-screen text of `infergate --check`.

#include <doctest/doctest.h>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

TEST_CASE("summary lists listeners, admin, workers, pools with endpoints, models, objectives") {
  auto s = load_ok(R"(apiVersion: infergate.io/v1alpha1
kind: ProxyConfig
metadata: {name: local}
spec:
  workers: 2
  listeners: [{address: "0.0.0.0:8080"}, {address: "[::]:8081"}]
  admin: {address: "127.0.0.1:9090"}
  endpoints:
  - {name: vllm-0, address: "127.0.0.1:8001", labels: {app: llama}}
  - {name: vllm-1, address: 10.0.0.12, labels: {app: llama}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}, {number: 8002}]
  appProtocol: kubernetes.io/h2c
  endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: FailOpen}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review}
spec:
  modelName: food-review
  criticality: Sheddable
  poolRef: {name: llama}
  targetModels: [{name: food-review-1, weight: 90}, {name: food-review-2, weight: 10}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: fallback}
spec:
  poolRef: {name: llama}
  rules: [{targets: [{modelRewrite: llama-3}]}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -5, poolRef: {name: llama}}
)");
  const std::string text = summary(*s);
  INFO(text);
  CHECK(text.find("workers: 2\n") != std::string::npos);
  CHECK(text.find("listener: 0.0.0.0:8080") != std::string::npos);
  CHECK(text.find("listener: [::]:8081") != std::string::npos);
  CHECK(text.find("admin: 127.0.0.1:9090") != std::string::npos);
  CHECK(text.find("scheduler: default\n") != std::string::npos);
  CHECK(text.find(
            "  default/llama [inference.networking.k8s.io/v1] selector app=llama ports 8000,8002 "
            "appProtocol kubernetes.io/h2c failureMode FailOpen\n") != std::string::npos);
  CHECK(text.find("    endpoint vllm-0 127.0.0.1:8001\n") != std::string::npos);
  CHECK(text.find("    endpoint vllm-1:8000 10.0.0.12:8000\n") != std::string::npos);
  CHECK(text.find("    endpoint vllm-1:8002 10.0.0.12:8002\n") != std::string::npos);
  CHECK(text.find(
            "  food-review -> default/llama: food-review-1 (weight 90), food-review-2 (weight 10) "
            "criticality Sheddable") != std::string::npos);
  CHECK(text.find("  * (any other model) -> default/llama: llama-3 (weight 1)") !=
        std::string::npos);
  CHECK(text.find("  batch priority -5 pool default/llama\n") != std::string::npos);
  // One screen.
  CHECK(std::count(text.begin(), text.end(), '\n') < 40);
}

TEST_CASE("summary of a disabled admin listener and automatic workers") {
  auto s = load_ok(
      "apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\nspec:\n  admin: {enabled: false}\n"
      "  endpoints: [{name: e0, address: 10.0.0.1, labels: {app: llama}}]\n" +
      kPool);
  const std::string text = summary(*s);
  INFO(text);
  CHECK(text.find("admin: disabled") != std::string::npos);
  CHECK(text.find("workers: auto") != std::string::npos);
}

TEST_CASE("summary shows the default scheduler profile and the per-pool overrides") {
  auto s = load_ok(kProxy + R"(  scheduler:
    profile: least-request
    pools:
    - {name: llama, profile: gie-legacy, weights: {queue: 1}, legacy: {criticalPriority: 1}}
    - {name: prod/qwen, saturation: {headroom: 0.5}}
)" + kPool + R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: qwen, namespace: prod}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8001}]
)");
  const std::string text = summary(*s);
  INFO(text);
  CHECK(text.find("scheduler: least-request\n"
                  "  pool default/llama: gie-legacy (tunes weights, legacy)\n"
                  "  pool prod/qwen: least-request (tunes saturation)\n") != std::string::npos);
}
