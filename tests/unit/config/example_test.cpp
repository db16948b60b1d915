// The full example of docs/configuration.md: it loads, and the document shows the fixture
// tests/fixtures/config/example-full.yaml unchanged.

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}
}  // namespace

TEST_CASE("the documented full example loads and matches the fixture") {
  const std::string path = kFixtures + "/example-full.yaml";
  LoadResult r = load({path});
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(warnings(r).empty());
  const Snapshot& s = *r.snapshot;
  CHECK(s.proxy.workers == 4);
  CHECK(s.proxy.listeners.size() == 2);
  CHECK(s.pools.size() == 2);
  CHECK(s.endpoints.size() == 4);
  CHECK(s.models.size() == 4);
  CHECK(s.objectives.size() == 1);
  CHECK(summary(s).find("food-review -> default/llama") != std::string::npos);

  const std::string doc =
      read_file(std::string(INFERGATE_TEST_FIXTURES) + "/../../docs/configuration.md");
  REQUIRE_FALSE(doc.empty());
  const size_t section = doc.find("## Full example");
  REQUIRE(section != std::string::npos);
  const size_t start = doc.find("```yaml\n", section);
  REQUIRE(start != std::string::npos);
  const size_t end = doc.find("```\n", start + 8);
  REQUIRE(end != std::string::npos);
  CHECK(doc.substr(start + 8, end - start - 8) == read_file(path));
}

TEST_CASE("the documented scheduler example loads") {
  const std::string doc =
      read_file(std::string(INFERGATE_TEST_FIXTURES) + "/../../docs/configuration.md");
  const size_t section = doc.find("### Scheduler");
  REQUIRE(section != std::string::npos);
  const size_t start = doc.find("```yaml\n", section);
  REQUIRE(start != std::string::npos);
  const size_t end = doc.find("```\n", start + 8);
  REQUIRE(end != std::string::npos);
  const std::string example = doc.substr(start + 8, end - start - 8);
  auto s = load_ok("apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\nmetadata: {name: p}\n" +
                   example + kPool + R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: qwen, namespace: prod}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8001}]
)");
  const SchedulerConfig& c = s->proxy.scheduler;
  CHECK(c.profile_for("default/llama") == "gie-legacy");
  CHECK(c.profile_for("prod/qwen") == "default");
  CHECK(c.pools.at("prod/qwen").weight_prefix == 5.0);
  CHECK(c.flow_control.enabled);
  CHECK(c.retry_after_seconds == 2);
}
