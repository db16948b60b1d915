// Gateway API Inference Extension kinds: fields, defaults, CRD validation rules, references,
// model-name uniqueness (oldest wins), unknown fields (warnings) and skipped kinds.

#include <doctest/doctest.h>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

namespace {
// GIE documents first (so their line numbers are easy to count), then the ProxyConfig.
std::string with_proxy(const std::string& docs) {
  return docs + "---\n" + kProxy;
}
}  // namespace

TEST_CASE("InferencePool v1: fields and defaults") {
  auto s = load_ok(with_proxy(R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: plain}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: fancy, namespace: models}
spec:
  selector:
    matchLabels: {app: llama}
  targetPorts:
  - number: 3000
  - number: 3002
  appProtocol: kubernetes.io/h2c
  endpointPickerRef:
    name: epp
    port: {number: 9002}
    failureMode: FailOpen
)"));
  REQUIRE(s->pools.size() == 2);
  const InferencePool& plain = s->pools[0];
  CHECK(plain.name == "plain");
  CHECK(plain.namespace_ == "default");
  CHECK(plain.api_version == "inference.networking.k8s.io/v1");
  CHECK(plain.selector == std::map<std::string, std::string>{{"app", "llama"}});
  CHECK(plain.target_ports == std::vector<uint16_t>{8000});
  CHECK(plain.app_protocol == AppProtocol::kHttp);
  CHECK(plain.failure_mode == FailureMode::kFailClose);
  CHECK(plain.where.line == 1);
  const InferencePool& fancy = s->pools[1];
  CHECK(Snapshot::pool_key(fancy.namespace_, fancy.name) == "models/fancy");
  CHECK(fancy.target_ports == std::vector<uint16_t>{3000, 3002});
  CHECK(fancy.app_protocol == AppProtocol::kH2c);
  CHECK(fancy.failure_mode == FailureMode::kFailOpen);
  CHECK(s->find_pool("models/fancy") == &fancy);
}

TEST_CASE("InferencePool v1alpha2: plain selector, targetPortNumber, extensionRef") {
  auto s = load_ok(with_proxy(R"(apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old}
spec:
  selector: {app: llama}
  targetPortNumber: 8000
  extensionRef: {name: epp, failureMode: FailOpen}
)"));
  REQUIRE(s->pools.size() == 1);
  CHECK(s->pools[0].api_version == "inference.networking.x-k8s.io/v1alpha2");
  CHECK(s->pools[0].selector.at("app") == "llama");
  CHECK(s->pools[0].target_ports == std::vector<uint16_t>{8000});
  CHECK(s->pools[0].failure_mode == FailureMode::kFailOpen);
}

TEST_CASE("InferencePool: CRD validation, every error at its node") {
  auto r = load_bad(with_proxy(R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: bad}
spec:
  selector:
    matchLabels: {app: "not valid!"}
  targetPorts:
  - number: 0
  - number: 80
  - number: 80
  appProtocol: h2
  endpointPickerRef:
    name: epp
    failureMode: FailSometimes
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: too-many-ports}
spec:
  selector: {matchLabels: {}}
  targetPorts: [{number: 1}, {number: 2}, {number: 3}, {number: 4}, {number: 5}, {number: 6}, {number: 7}, {number: 8}, {number: 9}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: missing}
spec:
  targetPorts: []
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old-missing}
spec:
  selector: {app: llama}
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:6:24: InferencePool default/bad: spec.selector.matchLabels.app: \"not "
            "valid!\" is not a valid label value");
  CHECK_HAS(e,
            "test.yaml:8:13: InferencePool default/bad: spec.targetPorts[0].number: must be "
            "between 1 and 65535 (got 0)");
  CHECK_HAS(e,
            "test.yaml:10:13: InferencePool default/bad: spec.targetPorts[2].number: port number "
            "80 must be unique");
  CHECK_HAS(e,
            "test.yaml:11:16: InferencePool default/bad: spec.appProtocol: must be http or "
            "kubernetes.io/h2c (got \"h2\")");
  CHECK_HAS(e,
            "test.yaml:13:5: InferencePool default/bad: spec.endpointPickerRef.port: is required "
            "when kind is Service or unspecified");
  CHECK_HAS(e,
            "test.yaml:14:18: InferencePool default/bad: spec.endpointPickerRef.failureMode: must "
            "be FailOpen or FailClose (got \"FailSometimes\")");
  CHECK_HAS(e,
            "test.yaml:20:27: InferencePool default/too-many-ports: spec.selector.matchLabels: "
            "must have at least one label");
  CHECK_HAS(e,
            "test.yaml:21:16: InferencePool default/too-many-ports: spec.targetPorts: must have "
            "between 1 and 8 entries (got 9)");
  CHECK_HAS(
      e, "test.yaml:27:3: InferencePool default/missing: spec.selector: required field is missing");
  CHECK_HAS(e,
            "test.yaml:27:16: InferencePool default/missing: spec.targetPorts: must have between 1 "
            "and 8 entries (got 0)");
  CHECK_HAS(e,
            "test.yaml:33:3: InferencePool default/old-missing: spec.targetPortNumber: required "
            "field is missing");
  CHECK_MESSAGE(e.size() == 11, joined(e));
}

TEST_CASE("a pool key may be defined once") {
  auto r = load_bad(with_proxy(kPool.substr(4) + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: llama}
spec: {selector: {app: llama}, targetPortNumber: 8000}
)"));
  CHECK_HAS(errors(r),
            "test.yaml:8:1: InferencePool default/llama: InferencePool default/llama is already "
            "defined at test.yaml:1:1 (as inference.networking.k8s.io/v1)");
}

TEST_CASE("InferenceModel: fields, criticality and weighted targets") {
  auto s = load_ok(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review}
spec:
  modelName: food-review
  criticality: Sheddable
  poolRef: {name: llama, group: inference.networking.k8s.io}
  targetModels:
  - {name: food-review-1, weight: 90}
  - {name: food-review-2, weight: 10}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec:
  modelName: meta-llama/Llama-3.1-8B-Instruct
  poolRef: {name: llama}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: uniform}
spec:
  modelName: uniform
  criticality: Critical
  poolRef: {name: llama}
  targetModels: [{name: u1}, {name: u2}, {name: u3}]
)");
  REQUIRE(s->models.size() == 3);
  const ModelRoute* food = find_model(*s, "food-review");
  REQUIRE(food);
  CHECK(food->pool == "default/llama");
  CHECK(food->criticality == Criticality::kSheddable);
  REQUIRE(food->targets.size() == 2);
  CHECK(food->targets[0].model == "food-review-1");
  CHECK(food->targets[0].weight == 90);
  CHECK(food->targets[1].weight == 10);
  CHECK(food->source_kind == "InferenceModel");
  CHECK(food->source_name == "default/food-review");
  CHECK(food->where.line == 21);
  CHECK_FALSE(food->catch_all);
  CHECK_FALSE(food->priority.has_value());

  const ModelRoute* base = find_model(*s, "meta-llama/Llama-3.1-8B-Instruct");
  REQUIRE(base);
  CHECK(base->targets.empty());  // pass-through
  CHECK_FALSE(base->criticality.has_value());

  const ModelRoute* uniform = find_model(*s, "uniform");
  REQUIRE(uniform);
  REQUIRE(uniform->targets.size() == 3);
  for (const auto& t : uniform->targets) CHECK(t.weight == 1);  // none given: all 1
  CHECK(criticality_priority(*uniform->criticality) == 1);
}

TEST_CASE("InferenceModel: CRD rules, all errors reported with their locations") {
  auto r = load_bad(with_proxy(kPool.substr(4) + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review}
spec:
  modelName: food-review
  criticality: Important
  poolRef: {name: llama, kind: Service}
  targetModels:
  - name: a
    weight: 10
  - name: b
  - name: c
    weight: 0
  - {weight: 5}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: empty}
spec:
  targetModels: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}, {name: g}, {name: h}, {name: i}, {name: j}, {name: k}]
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:13:16: InferenceModel default/food-review: spec.criticality: must be "
            "Critical, Standard or Sheddable (got \"Important\")");
  CHECK_HAS(e,
            "test.yaml:14:32: InferenceModel default/food-review: spec.poolRef.kind: must be "
            "InferencePool (got \"Service\")");
  CHECK_HAS(e,
            "test.yaml:18:5: InferenceModel default/food-review: spec.targetModels[1].weight: must "
            "be set on every target or on none");
  CHECK_HAS(e,
            "test.yaml:20:13: InferenceModel default/food-review: spec.targetModels[2].weight: "
            "must be between 1 and 1000000 (got 0)");
  CHECK_HAS(e,
            "test.yaml:21:5: InferenceModel default/food-review: spec.targetModels[3].name: "
            "required field is missing");
  CHECK_HAS(
      e, "test.yaml:27:3: InferenceModel default/empty: spec.modelName: required field is missing");
  CHECK_HAS(
      e, "test.yaml:27:3: InferenceModel default/empty: spec.poolRef: required field is missing");
  CHECK_HAS(e,
            "test.yaml:27:17: InferenceModel default/empty: spec.targetModels: must have at most "
            "10 entries (got 11)");
  CHECK_MESSAGE(e.size() == 8, joined(e));
}

TEST_CASE("poolRef must name an existing pool in the same namespace") {
  auto r = load_bad(with_proxy(kPool.substr(4) + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: typo}
spec: {modelName: m1, poolRef: {name: lama}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: elsewhere, namespace: other}
spec: {priority: 1, poolRef: {name: llama}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: nowhere}
spec:
  poolRef: {name: unrelated-pool-name}
  rules: [{matches: [{model: {value: a}}], targets: [{modelRewrite: b}]}]
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:11:39: InferenceModel default/typo: spec.poolRef.name: InferencePool "
            "default/lama not found (did you mean \"llama\"?)");
  CHECK_HAS(e,
            "InferenceObjective other/elsewhere: spec.poolRef.name: InferencePool other/llama not "
            "found (InferencePool default/llama exists, but a poolRef names a pool in its own "
            "namespace \"other\")");
  CHECK_HAS(e,
            "InferenceModelRewrite default/nowhere: spec.poolRef.name: InferencePool "
            "default/unrelated-pool-name not found (pools in namespace default: llama)");
  CHECK_MESSAGE(e.size() == 3, joined(e));
}

TEST_CASE("poolRef.group: explicit mismatch warns, defaults do not") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: a}
spec: {modelName: a, poolRef: {name: llama}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: b}
spec: {modelName: b, poolRef: {name: llama, group: inference.networking.x-k8s.io}}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  auto w = warnings(r);
  REQUIRE_MESSAGE(w.size() == 1, joined(w));
  CHECK_HAS(w,
            "InferenceModel default/b: spec.poolRef.group: is inference.networking.x-k8s.io but "
            "InferencePool default/llama is a inference.networking.k8s.io/v1 pool; using it");
  auto bad = load_bad(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: c}
spec: {modelName: c, poolRef: {name: llama, group: apps}}
)");
  CHECK_HAS(errors(bad),
            "spec.poolRef.group: must be inference.networking.k8s.io or "
            "inference.networking.x-k8s.io (got \"apps\")");
}

TEST_CASE("modelName unique per pool: the oldest wins, the loser is warned") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: first-in-file}
spec: {modelName: shared, poolRef: {name: llama}, targetModels: [{name: from-first}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: created-early, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {modelName: shared, poolRef: {name: llama}, targetModels: [{name: from-early}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: created-late, creationTimestamp: "2025-01-01T00:00:00Z"}
spec: {modelName: shared, poolRef: {name: llama}, targetModels: [{name: from-late}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: order-a}
spec: {modelName: by-order, poolRef: {name: llama}, targetModels: [{name: a}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: order-b}
spec: {modelName: by-order, poolRef: {name: llama}, targetModels: [{name: b}]}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  REQUIRE(r.snapshot->models.size() == 2);
  // A creationTimestamp beats document order: it already exists in a cluster.
  CHECK(find_model(*r.snapshot, "shared")->targets[0].model == "from-early");
  CHECK(find_model(*r.snapshot, "shared")->source_name == "default/created-early");
  CHECK(find_model(*r.snapshot, "by-order")->targets[0].model == "a");
  auto w = warnings(r);
  CHECK_MESSAGE(w.size() == 3, joined(w));
  CHECK_HAS(w,
            "test.yaml:20:19: warning: InferenceModel default/first-in-file: spec.modelName: model "
            "\"shared\" in pool default/llama is already claimed by InferenceModel "
            "default/created-early at test.yaml:25:19: it has a creationTimestamp and this one has "
            "none (oldest wins); this one is ignored");
  CHECK_HAS(
      w,
      "test.yaml:30:19: warning: InferenceModel default/created-late: spec.modelName: model "
      "\"shared\" in pool default/llama is already claimed by InferenceModel default/created-early "
      "at test.yaml:25:19: it was created earlier (oldest wins); this one is ignored");
  CHECK_HAS(
      w,
      "InferenceModel default/order-b: spec.modelName: model \"by-order\" in pool default/llama is "
      "already claimed by InferenceModel default/order-a at test.yaml:35:19: it comes first in the "
      "configuration (oldest wins); this one is ignored");
}

TEST_CASE("the same modelName in two pools is fine") {
  auto s = load_ok(kProxy + kPool + R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: other}
spec: {selector: {matchLabels: {app: llama}}, targetPorts: [{number: 9000}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: a}
spec: {modelName: m, poolRef: {name: llama}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: b}
spec: {modelName: m, poolRef: {name: other}}
)");
  REQUIRE(s->models.size() == 2);
  CHECK(s->models[0].pool == "default/llama");
  CHECK(s->models[1].pool == "default/other");
}

TEST_CASE("InferenceObjective: priority (negative allowed, unset is 0)") {
  auto s = load_ok(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -10, poolRef: {name: llama, group: inference.networking.k8s.io}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: plain}
spec: {poolRef: {name: llama}}
)");
  REQUIRE(s->objectives.size() == 2);
  const InferenceObjective* batch = find_objective(*s, "batch");
  REQUIRE(batch);
  CHECK(batch->priority == -10);
  CHECK(batch->pool == "default/llama");
  CHECK(batch->namespace_ == "default");
  CHECK(find_objective(*s, "plain")->priority == 0);
  CHECK(s->models.empty());

  auto bad = load_bad(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: huge}
spec: {priority: 3000000000, poolRef: {name: llama}}
)");
  CHECK_HAS(errors(bad),
            "InferenceObjective default/huge: spec.priority: must be between -2147483648 and "
            "2147483647 (got 3000000000)");
}

TEST_CASE("InferenceObjective, transitional shape: modelName/targetModels make a model route") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: sql-lora}
spec:
  priority: 2
  poolRef: {name: llama}
  targetModels: [{name: sql-lora-1fdg2, weight: 100}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: named}
spec:
  modelName: chat
  poolRef: {name: llama}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(warnings(r).empty());
  CHECK_HAS(infos(r),
            "InferenceObjective default/sql-lora: spec.targetModels: transitional "
            "InferenceObjective shape");
  const ModelRoute* sql = find_model(*r.snapshot, "sql-lora");  // metadata.name stands in
  REQUIRE(sql);
  CHECK(sql->source_kind == "InferenceObjective");
  CHECK(sql->priority == 2);
  REQUIRE(sql->targets.size() == 1);
  CHECK(sql->targets[0].model == "sql-lora-1fdg2");
  const ModelRoute* chat = find_model(*r.snapshot, "chat");
  REQUIRE(chat);
  CHECK(chat->priority == 0);
  CHECK(chat->targets.empty());
  CHECK(r.snapshot->objectives.size() == 2);
}

TEST_CASE("InferenceModelRewrite: one route per Exact match; catch-all rules") {
  auto s = load_ok(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: canary}
spec:
  poolRef: {group: inference.networking.k8s.io, name: llama}
  rules:
  - matches:
    - model: {type: Exact, value: small-segment-lora}
    - model: {value: small-lora}
    targets:
    - {modelRewrite: small-segment-lora-v1, weight: 90}
    - {modelRewrite: small-segment-lora-v2, weight: 10}
  - matches: []
    targets: [{modelRewrite: Qwen/Qwen3-32B}]
)");
  REQUIRE(s->models.size() == 3);
  for (const char* name : {"small-segment-lora", "small-lora"}) {
    const ModelRoute* m = find_model(*s, name);
    REQUIRE(m);
    CHECK(m->source_kind == "InferenceModelRewrite");
    CHECK(m->source_name == "default/canary");
    REQUIRE(m->targets.size() == 2);
    CHECK(m->targets[0].model == "small-segment-lora-v1");
    CHECK(m->targets[0].weight == 90);
    CHECK_FALSE(m->criticality.has_value());
  }
  CHECK(find_model(*s, "small-lora")->where.line == 25);
  const ModelRoute& fallback = s->models[2];
  CHECK(fallback.catch_all);
  CHECK(fallback.model_name.empty());
  CHECK(fallback.targets[0].model == "Qwen/Qwen3-32B");
  CHECK(fallback.targets[0].weight == 1);
}

TEST_CASE("InferenceModelRewrite: validation") {
  auto r = load_bad(with_proxy(kPool.substr(4) + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: bad}
spec:
  poolRef: {name: llama}
  rules:
  - matches:
    - model: {type: Prefix, value: a}
    - model: {value: ""}
    - {}
    targets: []
  - matches: [{model: {value: b}}]
    targets: [{modelRewrite: x, weight: 1}, {modelRewrite: y}]
  - matches: [{model: {value: c}}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: no-rules}
spec: {poolRef: {name: llama}}
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:15:21: InferenceModelRewrite default/bad: "
            "spec.rules[0].matches[0].model.type: must be Exact (got \"Prefix\")");
  CHECK_HAS(e,
            "test.yaml:16:22: InferenceModelRewrite default/bad: "
            "spec.rules[0].matches[1].model.value: must not be empty");
  CHECK_HAS(e,
            "test.yaml:17:7: InferenceModelRewrite default/bad: spec.rules[0].matches[2].model: "
            "required field is missing");
  CHECK_HAS(e,
            "test.yaml:18:14: InferenceModelRewrite default/bad: spec.rules[0].targets: must have "
            "at least one target");
  CHECK_HAS(e,
            "test.yaml:20:45: InferenceModelRewrite default/bad: spec.rules[1].targets[1].weight: "
            "must be set on every target or on none");
  CHECK_HAS(e,
            "test.yaml:21:5: InferenceModelRewrite default/bad: spec.rules[2].targets: required "
            "field is missing");
  CHECK_HAS(e,
            "test.yaml:26:7: InferenceModelRewrite default/no-rules: spec.rules: required field is "
            "missing");
  CHECK_MESSAGE(e.size() == 7, joined(e));
}

TEST_CASE("InferenceModel takes precedence over a rewrite of the same name; first rule wins") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rw}
spec:
  poolRef: {name: llama}
  rules:
  - matches: [{model: {value: m}}, {model: {value: n}}]
    targets: [{modelRewrite: from-rewrite}]
  - matches: [{model: {value: n}}]
    targets: [{modelRewrite: second-rule}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: model}
spec: {modelName: m, poolRef: {name: llama}, targetModels: [{name: from-model}]}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(find_model(*r.snapshot, "m")->targets[0].model == "from-model");
  CHECK(find_model(*r.snapshot, "n")->targets[0].model == "from-rewrite");
  auto w = warnings(r);
  CHECK_MESSAGE(w.size() == 2, joined(w));
  CHECK_HAS(w,
            "test.yaml:23:31: warning: InferenceModelRewrite default/rw: "
            "spec.rules[0].matches[0].model.value: model \"m\" in pool default/llama is already "
            "claimed by InferenceModel default/model at test.yaml:31:19: an InferenceModel takes "
            "precedence over an InferenceModelRewrite; this one is ignored");
  CHECK_HAS(w,
            "test.yaml:25:31: warning: InferenceModelRewrite default/rw: "
            "spec.rules[1].matches[0].model.value: model \"n\" in pool default/llama is already "
            "matched at test.yaml:23:52; this one is ignored");
}

TEST_CASE("unknown fields in GIE kinds are warnings (Kubernetes prunes them)") {
  LoadResult r = load_string(R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000, name: http}]
  colour: blue
  endpointPickerRef: {name: epp, namespace: x, port: {number: 9002}}
status: {parents: []}
extra: 1
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: m}
spec: {modelName: m, poolRef: {name: llama}, modelname: typo}
---
)" + kProxy,
                             "gie.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  auto w = warnings(r);
  CHECK_MESSAGE(w.size() == 5, joined(w));
  CHECK_HAS(w,
            "gie.yaml:6:32: warning: InferencePool default/llama: spec.targetPorts[0].name: "
            "unknown field; ignored");
  CHECK_HAS(
      w, "gie.yaml:7:3: warning: InferencePool default/llama: spec.colour: unknown field; ignored");
  CHECK_HAS(w,
            "gie.yaml:8:34: warning: InferencePool default/llama: "
            "spec.endpointPickerRef.namespace: unknown field; ignored");
  CHECK_HAS(w,
            "gie.yaml:10:1: warning: InferencePool default/llama: extra: unknown field; ignored");
  CHECK_HAS(w,
            "gie.yaml:15:46: warning: InferenceModel default/m: spec.modelname: unknown field (did "
            "you mean \"modelName\"?); ignored");
}

TEST_CASE("other kinds are skipped with one info each; unsupported GIE versions warn") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: apps/v1
kind: Deployment
metadata: {name: foo}
spec: {replicas: 3}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: inferencepools.inference.networking.k8s.io}
---
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: InferencePoolImport
metadata: {name: imported}
---
apiVersion: v1
kind: Service
---
apiVersion: inference.networking.k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: wrong-group}
---
---
# only a comment
)",
                             "bundle.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  auto i = infos(r);
  CHECK_MESSAGE(i.size() == 5, joined(i));
  CHECK_HAS(i, "bundle.yaml:17:1: info: skipping Deployment/foo");
  CHECK_HAS(i, "info: skipping HTTPRoute/route");
  CHECK_HAS(i,
            "info: skipping CustomResourceDefinition/inferencepools.inference.networking.k8s.io");
  CHECK_HAS(i, "info: skipping InferencePoolImport/imported");
  CHECK_HAS(i, "info: skipping Service");
  CHECK_HAS(warnings(r),
            "bundle.yaml:37:13: warning: skipping InferenceModelRewrite/wrong-group: apiVersion "
            "inference.networking.k8s.io/v1alpha2 is not supported for InferenceModelRewrite "
            "(supported: inference.networking.x-k8s.io/v1alpha2)");
}

TEST_CASE("metadata: name required and DNS-like; namespace a DNS label; kind/apiVersion required") {
  auto r = load_bad(with_proxy(R"(apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {namespace: default}
spec: {selector: {matchLabels: {app: llama}}, targetPorts: [{number: 8000}]}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: Bad_Name, namespace: "$E2E_NS"}
spec: {selector: {matchLabels: {app: llama}}, targetPorts: [{number: 8000}]}
---
kind: InferencePool
metadata: {name: x}
---
- just
- a list
)"));
  auto e = errors(r);
  CHECK_HAS(e, "test.yaml:3:11: InferencePool: metadata.name: required field is missing");
  CHECK_HAS(e,
            "test.yaml:8:18: InferencePool $E2E_NS/Bad_Name: metadata.name: must be a lower-case "
            "DNS subdomain");
  CHECK_HAS(e,
            "test.yaml:8:39: InferencePool $E2E_NS/Bad_Name: metadata.namespace: must be a "
            "lower-case DNS label");
  CHECK_HAS(e, "test.yaml:11:1: apiVersion: required field is missing");
  CHECK_HAS(e, "test.yaml:14:1: a document must be a mapping with apiVersion and kind");
  CHECK_MESSAGE(e.size() == 5, joined(e));
}

TEST_CASE("the same object twice: the later definition replaces the earlier (kubectl apply)") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: base-model}
spec: {priority: 1, poolRef: {name: llama}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: base-model}
spec: {priority: 5, poolRef: {name: llama}}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  REQUIRE(r.snapshot->objectives.size() == 1);
  CHECK(r.snapshot->objectives[0].priority == 5);
  CHECK_HAS(warnings(r),
            "test.yaml:22:1: warning: InferenceObjective default/base-model: defined again (first "
            "at test.yaml:17:1); this later definition replaces it, as kubectl apply would");
}

TEST_CASE("creationTimestamp must be RFC 3339") {
  LoadResult r = load_string(kProxy + kPool + R"(---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: m, creationTimestamp: yesterday}
spec: {modelName: m, poolRef: {name: llama}}
)",
                             "test.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK_HAS(warnings(r),
            "metadata.creationTimestamp: \"yesterday\" is not an RFC 3339 timestamp; ignored");
}
