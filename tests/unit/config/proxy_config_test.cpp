// ProxyConfig: defaults, every field, and its errors (unknown fields are errors here).

#include <doctest/doctest.h>

#include "config/loader.h"
#include "config_test_util.h"

using namespace infergate::config;
using namespace infergate::config::testing;
using std::chrono::milliseconds;

namespace {
std::string proxy(const std::string& spec) {
  return "apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\nmetadata: {name: p}\nspec:\n" +
         spec + kPool;
}
}  // namespace

TEST_CASE("ProxyConfig defaults") {
  auto s = load_ok(
      "apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\nmetadata: {name: p}\n"
      "spec:\n  endpoints: [{name: e0, address: 10.0.0.1, labels: {app: llama}}]\n" +
      kPool);
  const ProxyConfig& p = s->proxy;
  CHECK(p.name == "p");
  CHECK(p.workers == 0);
  REQUIRE(p.listeners.size() == 1);
  CHECK(p.listeners[0].address == "0.0.0.0:8080");
  CHECK(p.listeners[0].host == "0.0.0.0");
  CHECK(p.listeners[0].port == 8080);
  CHECK_FALSE(p.listeners[0].tls.has_value());
  CHECK(p.admin.address == "127.0.0.1:9090");
  CHECK(p.admin.port == 9090);
  CHECK(p.admin.enabled);
  CHECK(p.scheduler.profile == "least-request");
  const LimitsConfig d;
  CHECK(p.limits.max_request_body_bytes == 16ull << 20);
  CHECK(p.limits.max_request_header_bytes == d.max_request_header_bytes);
  CHECK(p.limits.header_timeout == milliseconds(10'000));
  CHECK(p.limits.drain_timeout == milliseconds(30'000));
  CHECK(p.limits.max_retries == 2);
  CHECK(p.where.line == 1);
}

TEST_CASE("ProxyConfig without spec is all defaults (and warns that nothing routes)") {
  LoadResult r = load_string("apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\n", "p.yaml");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.snapshot->proxy.listeners.size() == 1);
  CHECK_HAS(warnings(r), "no InferencePool is defined");
}

TEST_CASE("ProxyConfig: every field") {
  const std::string cert = kFixtures + "/tls/cert.pem";
  const std::string key = kFixtures + "/tls/key.pem";
  auto s = load_ok(proxy(R"(  workers: 3
  listeners:
  - address: 0.0.0.0:0
  - address: "[::1]:0"
    tls: {certFile: )" + cert +
                         ", keyFile: " + key + R"(}
  - address: ":18080"
  admin: {address: "127.0.0.1:0", enabled: false}
  endpoints:
  - {name: e0, address: "10.0.0.1", labels: {app: llama, tier: gold}}
  - {name: e1, address: "[fd00::1]:9000", labels: {app: llama}}
  - {name: e2, address: vllm.local, labels: {app: llama}}
  limits:
    maxRequestBodyBytes: 1Mi
    maxRequestHeaderBytes: 32Ki
    maxResponseBodyBytes: 1000000
    headerTimeout: 250ms
    bodyTimeout: 1m30s
    idleTimeout: 1.5s
    upstreamConnectTimeout: 750
    upstreamResponseTimeout: 2m
    upstreamIdleTimeout: 45s
    drainTimeout: 0s
    maxRetries: 0
    upstreamMaxIdlePerEndpoint: 8
  scheduler: {profile: least-request}
)"));
  const ProxyConfig& p = s->proxy;
  CHECK(p.workers == 3);
  REQUIRE(p.listeners.size() == 3);
  CHECK(p.listeners[0].port == 0);
  CHECK(p.listeners[1].host == "::1");
  REQUIRE(p.listeners[1].tls.has_value());
  CHECK(p.listeners[1].tls->cert_file == cert);
  CHECK(p.listeners[1].tls->key_file == key);
  CHECK(p.listeners[2].host == "0.0.0.0");
  CHECK(p.listeners[2].port == 18080);
  CHECK(p.listeners[2].address == ":18080");
  CHECK_FALSE(p.admin.enabled);
  REQUIRE(p.endpoints.size() == 3);
  CHECK(p.endpoints[0].labels.at("tier") == "gold");
  CHECK_FALSE(p.endpoints[0].port.has_value());
  CHECK(p.endpoints[1].host == "fd00::1");
  CHECK(p.endpoints[1].port == 9000);
  CHECK(p.endpoints[2].host == "vllm.local");
  CHECK(p.endpoints[2].where.line == 15);
  CHECK(p.limits.max_request_body_bytes == 1u << 20);
  CHECK(p.limits.max_request_header_bytes == 32u << 10);
  CHECK(p.limits.max_response_body_bytes == 1'000'000);
  CHECK(p.limits.header_timeout == milliseconds(250));
  CHECK(p.limits.body_timeout == milliseconds(90'000));
  CHECK(p.limits.idle_timeout == milliseconds(1'500));
  CHECK(p.limits.upstream_connect_timeout == milliseconds(750));
  CHECK(p.limits.upstream_response_timeout == milliseconds(120'000));
  CHECK(p.limits.upstream_idle_timeout == milliseconds(45'000));
  CHECK(p.limits.drain_timeout == milliseconds(0));
  CHECK(p.limits.max_retries == 0);
  CHECK(p.limits.upstream_max_idle_per_endpoint == 8);
}

TEST_CASE("ProxyConfig: unknown fields are errors, with a did-you-mean hint") {
  auto r = load_bad(proxy("  workrs: 2\n  limits:\n    headerTimout: 1s\n  colour: blue\n"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:5:3: ProxyConfig p: spec.workrs: unknown field (did you mean \"workers\"?)");
  CHECK_HAS(e,
            "test.yaml:7:5: ProxyConfig p: spec.limits.headerTimout: unknown field (did you mean "
            "\"headerTimeout\"?)");
  // Not close to anything: the valid names are listed instead.
  CHECK_HAS(e,
            "spec.colour: unknown field (expected workers, listeners, admin, endpoints, limits, "
            "scheduler or modelServerMetrics)");
  CHECK_MESSAGE(e.size() == 3, joined(e));
}

TEST_CASE("ProxyConfig: durations and sizes are validated") {
  auto r = load_bad(proxy(R"(  limits:
    headerTimeout: -5s
    bodyTimeout: ten seconds
    idleTimeout: 0
    drainTimeout: 10x
    maxRequestBodyBytes: 16Qi
    maxRequestHeaderBytes: 100
    maxResponseBodyBytes: -1
    maxRetries: -1
    upstreamConnectTimeout: [1s]
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:6:20: ProxyConfig p: spec.limits.headerTimeout: duration \"-5s\" must not "
            "be negative");
  CHECK_HAS(e, "spec.limits.bodyTimeout: invalid duration \"ten seconds\"");
  CHECK_HAS(e, "spec.limits.idleTimeout: must be greater than zero");
  CHECK_HAS(e, "spec.limits.drainTimeout: unknown unit \"x\"");
  CHECK_HAS(e, "spec.limits.maxRequestBodyBytes: invalid size \"16Qi\"");
  CHECK_HAS(
      e, "spec.limits.maxRequestHeaderBytes: must be between 1024 and 4294967295 bytes (got 100)");
  CHECK_HAS(e, "spec.limits.maxResponseBodyBytes: size \"-1\" must not be negative");
  CHECK_HAS(e, "spec.limits.maxRetries: must be between 0 and 100 (got -1)");
  CHECK_HAS(e, "spec.limits.upstreamConnectTimeout: must be a duration");
  CHECK_MESSAGE(e.size() == 9, joined(e));
}

TEST_CASE("ProxyConfig: integers and booleans are typed") {
  auto r = load_bad(proxy("  workers: \"2\"\n  admin: {enabled: yes}\n"));
  auto e = errors(r);
  CHECK_HAS(e, "spec.workers: must be an integer, not the string \"2\" (remove the quotes)");
  CHECK_HAS(e, "spec.admin.enabled: must be true or false (got \"yes\")");
  auto r2 = load_bad(proxy("  workers: two\n"));
  CHECK_HAS(errors(r2), "spec.workers: must be an integer (got \"two\")");
  auto r3 = load_bad(proxy("  workers: 100000\n"));
  CHECK_HAS(errors(r3), "spec.workers: must be between 0 and 1024 (got 100000)");
}

TEST_CASE("ProxyConfig: listener and admin addresses") {
  auto r = load_bad(proxy(R"(  listeners:
  - address: 0.0.0.0:99999
  - address: localhost:8080
  - address: 10.0.0.1
  - address: 127.0.0.1:8080
  - address: 127.0.0.1:8080
  - {}
  admin: {address: "127.0.0.1:8080"}
)"));
  auto e = errors(r);
  CHECK_HAS(e, "test.yaml:6:14: ProxyConfig p: spec.listeners[0].address: invalid port \"99999\"");
  CHECK_HAS(e,
            "spec.listeners[1].address: invalid address \"localhost:8080\": the host must be an IP "
            "address");
  CHECK_HAS(e, "spec.listeners[2].address: address \"10.0.0.1\" has no port");
  CHECK_HAS(e,
            "test.yaml:10:14: ProxyConfig p: spec.listeners[4].address: 127.0.0.1:8080 is already "
            "used by another listener (line 9)");
  CHECK_HAS(e,
            "test.yaml:11:5: ProxyConfig p: spec.listeners[5].address: required field is missing");
  CHECK_HAS(e, "spec.admin.address: 127.0.0.1:8080 is also a listener address");
  CHECK_MESSAGE(e.size() == 6, joined(e));

  auto r2 = load_bad(proxy("  listeners: []\n"));
  CHECK_HAS(errors(r2), "spec.listeners: must list at least one listener");
}

TEST_CASE("ProxyConfig: TLS files must exist; relative paths follow the config file") {
  auto r = load_bad(
      proxy("  listeners:\n  - address: 0.0.0.0:0\n    tls: {certFile: /nonexistent/cert.pem}\n"));
  auto e = errors(r);
  CHECK_HAS(e, "spec.listeners[0].tls.certFile: file \"/nonexistent/cert.pem\" not found");
  CHECK_HAS(
      e, "test.yaml:7:10: ProxyConfig p: spec.listeners[0].tls.keyFile: required field is missing");

  // tls-relative.yaml names tls/cert.pem next to itself.
  LoadResult ok = load({kFixtures + "/tls-relative.yaml"});
  INFO(dump(ok));
  REQUIRE(ok.ok());
  REQUIRE(ok.snapshot->proxy.listeners[0].tls.has_value());
  CHECK(ok.snapshot->proxy.listeners[0].tls->cert_file == kFixtures + "/tls/cert.pem");
}

TEST_CASE("ProxyConfig: static endpoints") {
  auto r = load_bad(proxy(R"(  endpoints:
  - {name: a, address: "10.0.0.1:80", labels: {app: llama}}
  - {name: a, address: "bad host!", labels: {app: llama}}
  - {address: 10.0.0.2}
  - {name: "x|y", address: "10.0.0.3:0"}
  - {name: b, address: 10.0.0.4, labels: {app: [llama]}}
  - {name: c, address: "10.0.0.1:80"}
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:7:12: ProxyConfig p: spec.endpoints[1].name: duplicate endpoint name \"a\" "
            "(first at line 6)");
  CHECK_HAS(
      e, "test.yaml:7:24: ProxyConfig p: spec.endpoints[1].address: invalid address \"bad host!\"");
  CHECK_HAS(e, "spec.endpoints[2].name: required field is missing");
  CHECK_HAS(e, "spec.endpoints[3].name: \"x|y\" must not contain spaces or '|'");
  CHECK_HAS(e, "spec.endpoints[3].address: invalid port 0");
  CHECK_HAS(e, "spec.endpoints[4].labels.app: must be a string, not a list");
  CHECK_MESSAGE(e.size() == 6, joined(e));
  CHECK_HAS(warnings(r),
            "spec.endpoints[5].address: endpoint \"c\" has the same address as endpoint \"a\"");
}

TEST_CASE("ProxyConfig: scheduler profile") {
  auto r = load_bad(proxy("  scheduler: {profile: least-requests}\n"));
  CHECK(contains(errors(r),
                 "spec.scheduler.profile: unknown scheduler profile \"least-requests\" (valid: "
                 "least-request); did you mean \"least-request\"?"));
  auto r2 = load_bad(proxy("  scheduler: {profile: magic}\n"));
  CHECK_HAS(errors(r2), "unknown scheduler profile \"magic\" (valid: least-request)");
}

TEST_CASE("exactly one ProxyConfig") {
  auto none = load_bad(kPool, "pools.yaml");
  CHECK_HAS(errors(none), "pools.yaml: no ProxyConfig found");

  auto two = load_bad(kProxy + "---\n" + kProxy + kPool);
  auto e = errors(two);
  REQUIRE_MESSAGE(e.size() == 1, joined(e));
  CHECK(e[0] ==
        "test.yaml:10:1: ProxyConfig test: only one ProxyConfig is allowed; the first one is at "
        "test.yaml:1:1");
}

TEST_CASE("ProxyConfig apiVersion and kind are checked") {
  auto r = load_bad("apiVersion: infergate.io/v1\nkind: ProxyConfig\n" + kPool);
  CHECK_HAS(errors(r),
            "test.yaml:1:13: apiVersion: must be infergate.io/v1alpha1 for kind ProxyConfig (got "
            "\"infergate.io/v1\")");
  auto r2 = load_bad(kProxy + "---\napiVersion: infergate.io/v1alpha1\nkind: ProxyConfg\n" + kPool);
  CHECK_HAS(errors(r2),
            "test.yaml:11:7: kind: unknown kind \"ProxyConfg\" for apiVersion "
            "infergate.io/v1alpha1 (expected ProxyConfig)");
}

TEST_CASE("ProxyConfig: modelServerMetrics") {
  auto d = load_ok(proxy(""));
  const ModelServerMetricsConfig defaults;
  CHECK(d->proxy.model_server_metrics.interval == milliseconds(50));
  CHECK(d->proxy.model_server_metrics.stale_after == milliseconds(200));
  CHECK(d->proxy.model_server_metrics.engine_type == "auto");
  CHECK(d->proxy.model_server_metrics.enabled == defaults.enabled);

  auto s = load_ok(
      proxy("  modelServerMetrics: {interval: 25ms, timeout: 500ms, staleAfter: 1s, path: /m, "
            "engineType: sglang, enabled: false}\n"));
  const auto& m = s->proxy.model_server_metrics;
  CHECK(m.interval == milliseconds(25));
  CHECK(m.timeout == milliseconds(500));
  CHECK(m.stale_after == milliseconds(1000));
  CHECK(m.path == "/m");
  CHECK(m.engine_type == "sglang");
  CHECK_FALSE(m.enabled);

  auto r =
      load_bad(proxy("  modelServerMetrics: {engineType: vlm, path: metrics, interval: -1s}\n"));
  auto e = errors(r);
  CHECK_HAS(
      e,
      "unknown engine type \"vlm\" (valid: auto, vllm, sglang or trtllm); did you mean \"vllm\"?");
  CHECK_HAS(e, "spec.modelServerMetrics.path: must be an absolute path such as /metrics");
  CHECK_HAS(e, "spec.modelServerMetrics.interval:");
}
