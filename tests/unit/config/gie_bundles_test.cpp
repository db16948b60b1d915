// The real GIE manifests beside the clone (../shared/gie, read-only reference data, not copied
// into the repository) load as they are, each with tests/fixtures/config/gie-proxy.yaml, and
// give the same pools, models and priorities as the GIE controller would.

#include <doctest/doctest.h>

#include <filesystem>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

namespace {

std::string gie_dir() {
  std::error_code ec;
  auto dir = std::filesystem::weakly_canonical(
      std::filesystem::path(INFERGATE_TEST_FIXTURES) / ".." / ".." / ".." / "shared" / "gie", ec);
  if (ec || !std::filesystem::is_directory(dir)) return {};
  return dir.string();
}

// Loads the ProxyConfig fixture plus `paths`; requires no error.
SnapshotPtr load_bundle(const std::vector<std::string>& paths, LoadResult* out = nullptr) {
  std::vector<std::string> all = {kFixtures + "/gie-proxy.yaml"};
  all.insert(all.end(), paths.begin(), paths.end());
  LoadResult r = load(all);
  INFO(dump(r));
  CHECK(errors(r).empty());
  REQUIRE(r.ok());
  if (out) *out = r;
  return r.snapshot;
}

// Warnings other than "this endpoint of the shared ProxyConfig fixture is unused".
std::vector<std::string> real_warnings(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& w : warnings(r))
    if (w.find("is selected by no InferencePool") == std::string::npos) out.push_back(w);
  return out;
}

std::vector<std::string> endpoint_keys(const Snapshot& s, std::string_view pool) {
  std::vector<std::string> out;
  for (const auto& e : s.endpoints)
    if (e.pool == pool) out.push_back(e.key);
  return out;
}

}  // namespace

TEST_CASE("GIE v0.3.0 manifests") {
  const std::string gie = gie_dir();
  if (gie.empty()) {
    MESSAGE("../shared/gie not found beside the clone: skipping the GIE bundle tests");
    return;
  }
  LoadResult r;
  auto s = load_bundle(
      {gie + "/v0.3.0/inferencemodel.yaml", gie + "/v0.3.0/inferencepool-resources.yaml"}, &r);
  CHECK(real_warnings(r).empty());
  CHECK_HAS(infos(r), "info: skipping Service/vllm-llama3-8b-instruct-epp");
  CHECK_HAS(infos(r), "info: skipping Deployment/vllm-llama3-8b-instruct-epp");
  CHECK_HAS(infos(r), "info: skipping ClusterRole/pod-read");
  CHECK_HAS(infos(r), "info: skipping ClusterRoleBinding/pod-read-binding");

  REQUIRE(s->pools.size() == 1);
  const InferencePool& pool = s->pools[0];
  CHECK(Snapshot::pool_key(pool.namespace_, pool.name) == "default/vllm-llama3-8b-instruct");
  CHECK(pool.api_version == "inference.networking.x-k8s.io/v1alpha2");
  CHECK(pool.selector == std::map<std::string, std::string>{{"app", "vllm-llama3-8b-instruct"}});
  CHECK(pool.target_ports == std::vector<uint16_t>{8000});
  CHECK(pool.failure_mode == FailureMode::kFailClose);  // extensionRef without failureMode
  CHECK(endpoint_keys(*s, "default/vllm-llama3-8b-instruct") ==
        std::vector<std::string>{"default/vllm-llama3-8b-instruct|llama-0|10.1.0.1:8000"});

  REQUIRE(s->models.size() == 3);
  const ModelRoute* food = find_model(*s, "food-review");
  REQUIRE(food);
  CHECK(food->pool == "default/vllm-llama3-8b-instruct");
  CHECK(food->criticality == Criticality::kStandard);
  REQUIRE(food->targets.size() == 1);
  CHECK(food->targets[0].model == "food-review");
  CHECK(food->targets[0].weight == 100);
  const ModelRoute* base = find_model(*s, "meta-llama/Llama-3.1-8B-Instruct");
  REQUIRE(base);
  CHECK(base->criticality == Criticality::kCritical);
  CHECK(base->targets.empty());
  const ModelRoute* cpu = find_model(*s, "Qwen/Qwen2.5-1.5B-Instruct");
  REQUIRE(cpu);
  CHECK(cpu->criticality == Criticality::kCritical);
  CHECK(s->objectives.empty());
}

TEST_CASE("GIE v1.5.0 manifests, all together") {
  const std::string gie = gie_dir();
  if (gie.empty()) {
    MESSAGE("../shared/gie not found beside the clone: skipping the GIE bundle tests");
    return;
  }
  LoadResult r;
  auto s = load_bundle({gie + "/v1.5.0"}, &r);
  auto w = real_warnings(r);
  CHECK_MESSAGE(w.size() == 2, joined(w));
  // Both objective manifests define default/base-model (the same priority).
  CHECK_HAS(w, "InferenceObjective default/base-model: defined again");
  // The e2e pool's endpointPickerRef has a namespace, which the v1 CRD does not know.
  CHECK_HAS(w, "spec.endpointPickerRef.namespace: unknown field; ignored");

  // Pools: 5 from the conformance base, the e2e pool and the hermetic pool.
  REQUIRE(s->pools.size() == 7);
  const std::string ns = "inference-conformance-app-backend/";
  const InferencePool* primary = s->find_pool(ns + "primary-inference-pool");
  REQUIRE(primary);
  CHECK(primary->failure_mode == FailureMode::kFailClose);
  CHECK(primary->app_protocol == AppProtocol::kHttp);
  CHECK(s->find_pool(ns + "secondary-inference-pool")->failure_mode == FailureMode::kFailOpen);
  CHECK(s->find_pool(ns + "appprotocol-http-inference-pool")->app_protocol == AppProtocol::kHttp);
  const InferencePool* h2c = s->find_pool(ns + "appprotocol-h2c-inference-pool");
  REQUIRE(h2c);
  CHECK(h2c->app_protocol == AppProtocol::kH2c);
  CHECK(h2c->target_ports == std::vector<uint16_t>{3001});
  const InferencePool* dp = s->find_pool(ns + "dp-inference-pool");
  REQUIRE(dp);
  CHECK(dp->target_ports == std::vector<uint16_t>{3000, 3002, 3004});
  CHECK(endpoint_keys(*s, ns + "dp-inference-pool") ==
        std::vector<std::string>{ns + "dp-inference-pool|dp-0|10.4.0.4:3000",
                                 ns + "dp-inference-pool|dp-0|10.4.0.4:3002",
                                 ns + "dp-inference-pool|dp-0|10.4.0.4:3004"});
  CHECK(endpoint_keys(*s, "default/vllm-qwen3-32b") ==
        std::vector<std::string>{"default/vllm-qwen3-32b|qwen-0|10.2.0.1:8000",
                                 "default/vllm-qwen3-32b|qwen-1|10.2.0.2:8001"});
  REQUIRE(s->find_pool("default/vllm-qwen3-32b-pool"));

  // Models: the transitional objectives of the hermetic test data and its rewrite.
  REQUIRE(s->models.size() == 4);
  const ModelRoute* sql = find_model(*s, "sql-lora");
  REQUIRE(sql);
  CHECK(sql->pool == "default/vllm-qwen3-32b-pool");
  CHECK(sql->targets[0].model == "sql-lora-1fdg2");
  CHECK(sql->priority == 2);
  CHECK(find_model(*s, "sql-lora-sheddable")->priority == 0);
  CHECK(find_model(*s, "my-model")->targets[0].model == "my-model-12345");
  const ModelRoute* rewrite = find_model(*s, "model-to-be-rewritten");
  REQUIRE(rewrite);
  CHECK(rewrite->source_kind == "InferenceModelRewrite");
  REQUIRE(rewrite->targets.size() == 1);
  CHECK(rewrite->targets[0].model == "rewritten-model");
  CHECK(rewrite->targets[0].weight == 1);

  // Objectives: 3 + 16 (base-model once) + 5 hermetic = 23.
  CHECK(s->objectives.size() == 23);
  CHECK(find_objective(*s, "small-segment-lora")->priority == 1);
  CHECK(find_objective(*s, "small-segment-lora")->pool == "default/vllm-qwen3-32b");
  CHECK(find_objective(*s, "base-model")->priority == 2);
  CHECK(find_objective(*s, "adapter-14")->priority == 2);
  CHECK(find_objective(*s, "inference-objective-with-priority-4")->priority == 4);
  CHECK(find_objective(*s, "direct-model")->pool == "default/vllm-qwen3-32b-pool");
  CHECK(find_objective(*s, "sql-lora-sheddable")->priority == 0);
}

TEST_CASE("GIE v1.5.0 manifests, file by file where self-contained") {
  const std::string gie = gie_dir();
  if (gie.empty()) {
    MESSAGE("../shared/gie not found beside the clone: skipping the GIE bundle tests");
    return;
  }
  const std::string v = gie + "/v1.5.0/";
  // The objective manifests reference the e2e pool.
  load_bundle(
      {v + "test_testdata_inferencepool-e2e.yaml", v + "config_manifests_inferenceobjective.yaml"});
  load_bundle({v + "test_testdata_inferencepool-e2e.yaml",
               v + "config_manifests_regression-testing_inferenceobjective.yaml"});
  load_bundle({v + "test_testdata_inferencepool-with-model-hermetic.yaml"});
  load_bundle({v + "conformance_resources_base.yaml"});
  // Only a Deployment: skipped, and no pool at all is only a warning.
  LoadResult r;
  load_bundle({v + "config_manifests_vllm_sim-deployment.yaml"}, &r);
  CHECK_HAS(infos(r), "info: skipping Deployment/vllm-qwen3-32b");
}

TEST_CASE("GIE CRDs are skipped kinds") {
  const std::string gie = gie_dir();
  if (gie.empty()) {
    MESSAGE("../shared/gie not found beside the clone: skipping the GIE bundle tests");
    return;
  }
  LoadResult r;
  load_bundle({gie + "/v0.3.0/crd", gie + "/v1.5.0/crd"}, &r);
  auto i = infos(r);
  CHECK_MESSAGE(i.size() == 6, joined(i));
  CHECK_HAS(i,
            "info: skipping CustomResourceDefinition/inferencepools.inference.networking.k8s.io");
  CHECK_HAS(
      i, "info: skipping CustomResourceDefinition/inferencemodels.inference.networking.x-k8s.io");
  CHECK_HAS(
      i,
      "info: skipping CustomResourceDefinition/inferencepoolimports.inference.networking.x-k8s.io");
}
