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
  CHECK_FALSE(p.scheduler.defaults.profile.has_value());
  CHECK(p.scheduler.profile_for("default/llama") == "default");
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
  scheduler: {profile: least-request, pools: [{name: llama, profile: random}]}
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
  CHECK(p.scheduler.defaults.profile == "least-request");
  CHECK(p.scheduler.profile_for("default/llama") == "random");
  CHECK(p.scheduler.profile_for("default/other") == "least-request");
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
            "scheduler, modelServerMetrics or discovery)");
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
  CHECK_HAS(errors(r),
            "test.yaml:5:24: ProxyConfig p: spec.scheduler.profile: unknown scheduler profile "
            "\"least-requests\" (valid: default, gie-default, gie-legacy, least-request, "
            "round-robin or random); did you mean \"least-request\"?");
  auto r2 = load_bad(proxy("  scheduler: {profile: magic}\n"));
  CHECK_HAS(errors(r2),
            "unknown scheduler profile \"magic\" (valid: default, gie-default, gie-legacy, "
            "least-request, round-robin or random)");
  for (auto name : kSchedulerProfiles) {
    auto s = load_ok(proxy("  scheduler: {profile: " + std::string(name) + "}\n"));
    CHECK(s->proxy.scheduler.profile_for("default/llama") == name);
  }
}

TEST_CASE("ProxyConfig: scheduler defaults") {
  auto s = load_ok(proxy(""));
  const SchedulerConfig& c = s->proxy.scheduler;
  const SchedulerTunables& t = c.defaults;
  CHECK_FALSE(t.profile);
  CHECK_FALSE(t.weight_queue);
  CHECK_FALSE(t.weight_kv_cache);
  CHECK_FALSE(t.weight_prefix);
  CHECK_FALSE(t.weight_lora);
  CHECK_FALSE(t.weight_in_flight);
  CHECK_FALSE(t.queue_score_span);
  CHECK_FALSE(t.in_flight_score_span);
  CHECK_FALSE(t.queue_depth_threshold);
  CHECK_FALSE(t.kv_cache_threshold);
  CHECK_FALSE(t.headroom);
  CHECK_FALSE(t.metrics_staleness);
  CHECK_FALSE(t.prefix_auto_tune);
  CHECK_FALSE(t.prefix_block_size_tokens);
  CHECK_FALSE(t.prefix_bytes_per_token);
  CHECK_FALSE(t.prefix_max_blocks);
  CHECK_FALSE(t.prefix_lru_capacity_per_server);
  CHECK_FALSE(t.legacy_queueing_threshold_lora);
  CHECK_FALSE(t.legacy_queue_threshold_critical);
  CHECK_FALSE(t.legacy_critical_priority);
  CHECK_FALSE(t.legacy_kv_cache_threshold);
  CHECK_FALSE(t.legacy_lora_affinity_threshold);
  CHECK(c.pools.empty());
  CHECK(c.prefix_index_bytes == 64ull << 20);
  CHECK_FALSE(c.flow_control.enabled);
  CHECK(c.flow_control.max_requests == 1000);
  CHECK(c.flow_control.max_bytes == 64ull << 20);
  CHECK(c.flow_control.ttl == milliseconds(30'000));
  CHECK_FALSE(c.debug_header);
  CHECK(c.retry_after_seconds == 1);
  CHECK(c.profile_for("default/llama") == "default");
}

TEST_CASE("ProxyConfig: every scheduler field") {
  auto s = load_ok(proxy(R"(  scheduler:
    profile: gie-default
    weights: {queue: 2, kvCache: 2.5, prefixCache: 3, loraAffinity: 0, inFlight: 1e-1}
    queueScoreSpan: 5
    inFlightScoreSpan: 16.5
    saturation: {queueDepthThreshold: 7.5, kvCacheThreshold: 1, metricsStalenessThreshold: 250ms,
                 headroom: 0.2}
    prefixCache: {autoTune: false, blockSizeTokens: 32, bytesPerToken: 3, maxPrefixBlocks: 4096,
                  lruCapacityPerServer: 50000}
    legacy: {queueingThresholdLoRA: 50, queueThresholdCritical: 0, kvCacheThreshold: 0.9,
             loraAffinityThreshold: 0, criticalPriority: -2}
    prefixIndexBytes: 128Ki
    flowControl: {enabled: true, maxRequests: 1, maxBytes: 1Mi, ttl: 2s}
    debugHeader: true
    retryAfterSeconds: 3600
    pools:
    - name: llama
      profile: gie-legacy
      weights: {queue: 1, kvCache: 0, prefixCache: 0, loraAffinity: 9, inFlight: 0}
      queueScoreSpan: 0
      inFlightScoreSpan: 0
      saturation: {queueDepthThreshold: 1, kvCacheThreshold: 0.5, metricsStalenessThreshold: 1s,
                   headroom: 1}
      prefixCache: {autoTune: true, blockSizeTokens: 1, bytesPerToken: 1, maxPrefixBlocks: 1,
                    lruCapacityPerServer: 1}
      legacy: {queueingThresholdLoRA: 0, queueThresholdCritical: 9, kvCacheThreshold: 0.1,
               loraAffinityThreshold: 1, criticalPriority: 1}
    - name: prod/qwen
      weights: {prefixCache: 4}
)" + std::string(R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: qwen, namespace: prod}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8001}]
)")));
  const SchedulerConfig& c = s->proxy.scheduler;
  const SchedulerTunables& t = c.defaults;
  CHECK(t.profile == "gie-default");
  CHECK(t.weight_queue == 2.0);
  CHECK(t.weight_kv_cache == 2.5);
  CHECK(t.weight_prefix == 3.0);
  CHECK(t.weight_lora == 0.0);
  CHECK(t.weight_in_flight == doctest::Approx(0.1));
  CHECK(t.queue_score_span == 5.0);
  CHECK(t.in_flight_score_span == 16.5);
  CHECK(t.queue_depth_threshold == 7.5);
  CHECK(t.kv_cache_threshold == 1.0);
  CHECK(t.metrics_staleness == milliseconds(250));
  CHECK(t.headroom == doctest::Approx(0.2));
  CHECK(t.prefix_auto_tune == false);
  CHECK(t.prefix_block_size_tokens == 32u);
  CHECK(t.prefix_bytes_per_token == 3u);
  CHECK(t.prefix_max_blocks == 4096u);
  CHECK(t.prefix_lru_capacity_per_server == 50000u);
  CHECK(t.legacy_queueing_threshold_lora == 50);
  CHECK(t.legacy_queue_threshold_critical == 0);
  CHECK(t.legacy_kv_cache_threshold == doctest::Approx(0.9));
  CHECK(t.legacy_lora_affinity_threshold == 0.0);
  CHECK(t.legacy_critical_priority == -2);
  CHECK(c.prefix_index_bytes == 128u << 10);
  CHECK(c.flow_control.enabled);
  CHECK(c.flow_control.max_requests == 1);
  CHECK(c.flow_control.max_bytes == 1u << 20);
  CHECK(c.flow_control.ttl == milliseconds(2'000));
  CHECK(c.debug_header);
  CHECK(c.retry_after_seconds == 3600);

  REQUIRE(c.pools.size() == 2);
  REQUIRE(c.pools.count("default/llama") == 1);
  const SchedulerTunables& l = c.pools.at("default/llama");
  CHECK(l.profile == "gie-legacy");
  CHECK(l.weight_queue == 1.0);
  CHECK(l.weight_kv_cache == 0.0);
  CHECK(l.weight_prefix == 0.0);
  CHECK(l.weight_lora == 9.0);
  CHECK(l.weight_in_flight == 0.0);
  CHECK(l.queue_score_span == 0.0);
  CHECK(l.in_flight_score_span == 0.0);
  CHECK(l.queue_depth_threshold == 1.0);
  CHECK(l.kv_cache_threshold == 0.5);
  CHECK(l.metrics_staleness == milliseconds(1'000));
  CHECK(l.headroom == 1.0);
  CHECK(l.prefix_auto_tune == true);
  CHECK(l.prefix_block_size_tokens == 1u);
  CHECK(l.prefix_bytes_per_token == 1u);
  CHECK(l.prefix_max_blocks == 1u);
  CHECK(l.prefix_lru_capacity_per_server == 1u);
  CHECK(l.legacy_queueing_threshold_lora == 0);
  CHECK(l.legacy_queue_threshold_critical == 9);
  CHECK(l.legacy_kv_cache_threshold == doctest::Approx(0.1));
  CHECK(l.legacy_lora_affinity_threshold == 1.0);
  CHECK(l.legacy_critical_priority == 1);

  REQUIRE(c.pools.count("prod/qwen") == 1);
  const SchedulerTunables& q = c.pools.at("prod/qwen");
  CHECK_FALSE(q.profile);
  CHECK(q.weight_prefix == 4.0);
  CHECK_FALSE(q.weight_queue);
  CHECK(c.profile_for("default/llama") == "gie-legacy");
  CHECK(c.profile_for("prod/qwen") == "gie-default");
  CHECK(c.profile_for("default/other") == "gie-default");
}

TEST_CASE("ProxyConfig: scheduler ranges") {
  auto r = load_bad(proxy(R"(  scheduler:
    weights: {queue: -1, kvCache: -0.5, prefixCache: -2, loraAffinity: -3, inFlight: -4}
    queueScoreSpan: -1
    inFlightScoreSpan: -0.1
    saturation: {queueDepthThreshold: 0, kvCacheThreshold: 1.5, metricsStalenessThreshold: 0s,
                 headroom: -1}
    prefixCache: {blockSizeTokens: 0, bytesPerToken: 0, maxPrefixBlocks: 4097,
                  lruCapacityPerServer: 0}
    legacy: {queueingThresholdLoRA: -1, queueThresholdCritical: -1, kvCacheThreshold: 0,
             loraAffinityThreshold: 1.001}
    prefixIndexBytes: 131071
    flowControl: {maxRequests: 0, maxBytes: 0, ttl: 0}
    retryAfterSeconds: 3601
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:6:22: ProxyConfig p: spec.scheduler.weights.queue: must be >= 0 (got -1)");
  CHECK_HAS(e,
            "test.yaml:6:35: ProxyConfig p: spec.scheduler.weights.kvCache: must be >= 0 (got "
            "-0.5)");
  CHECK_HAS(e, "spec.scheduler.weights.prefixCache: must be >= 0 (got -2)");
  CHECK_HAS(e, "spec.scheduler.weights.loraAffinity: must be >= 0 (got -3)");
  CHECK_HAS(e, "spec.scheduler.weights.inFlight: must be >= 0 (got -4)");
  CHECK_HAS(e,
            "test.yaml:7:21: ProxyConfig p: spec.scheduler.queueScoreSpan: must be >= 0 (got -1)");
  CHECK_HAS(e,
            "test.yaml:8:24: ProxyConfig p: spec.scheduler.inFlightScoreSpan: must be >= 0 "
            "(got -0.1)");
  CHECK_HAS(e,
            "test.yaml:9:39: ProxyConfig p: spec.scheduler.saturation.queueDepthThreshold: "
            "must be > 0 (got 0)");
  CHECK_HAS(e, "spec.scheduler.saturation.kvCacheThreshold: must be in (0, 1] (got 1.5)");
  CHECK_HAS(e, "spec.scheduler.saturation.metricsStalenessThreshold: must be greater than zero");
  CHECK_HAS(e,
            "test.yaml:10:28: ProxyConfig p: spec.scheduler.saturation.headroom: must be >= 0 "
            "(got -1)");
  CHECK_HAS(e,
            "spec.scheduler.prefixCache.blockSizeTokens: must be between 1 and 4294967295 (got "
            "0)");
  CHECK_HAS(e,
            "spec.scheduler.prefixCache.bytesPerToken: must be between 1 and 4294967295 (got 0)");
  CHECK_HAS(e, "spec.scheduler.prefixCache.maxPrefixBlocks: must be between 1 and 4096 (got 4097)");
  CHECK_HAS(e,
            "test.yaml:12:41: ProxyConfig p: spec.scheduler.prefixCache.lruCapacityPerServer: "
            "must be between 1 and");
  CHECK_HAS(e,
            "spec.scheduler.legacy.queueingThresholdLoRA: must be between 0 and 2147483647 "
            "(got -1)");
  CHECK_HAS(e,
            "spec.scheduler.legacy.queueThresholdCritical: must be between 0 and 2147483647 "
            "(got -1)");
  CHECK_HAS(e,
            "test.yaml:13:87: ProxyConfig p: spec.scheduler.legacy.kvCacheThreshold: must be "
            "in (0, 1] (got 0)");
  CHECK_HAS(e, "spec.scheduler.legacy.loraAffinityThreshold: must be in [0, 1] (got 1.001)");
  CHECK_HAS(e,
            "test.yaml:15:23: ProxyConfig p: spec.scheduler.prefixIndexBytes: must be between "
            "131072 and 18446744073709551615 bytes (got 131071)");
  CHECK_HAS(e, "spec.scheduler.flowControl.maxRequests: must be between 1 and 4294967295 (got 0)");
  CHECK_HAS(e, "spec.scheduler.flowControl.maxBytes: must be between 1 and");
  CHECK_HAS(e, "spec.scheduler.flowControl.ttl: must be greater than zero");
  CHECK_HAS(e,
            "test.yaml:17:24: ProxyConfig p: spec.scheduler.retryAfterSeconds: must be between "
            "1 and 3600 (got 3601)");
  CHECK_MESSAGE(e.size() == 24, joined(e));

  // The same checks apply inside a per-pool override.
  auto r2 = load_bad(proxy("  scheduler:\n    pools:\n    - {name: llama, queueScoreSpan: -1}\n"));
  CHECK_HAS(errors(r2),
            "test.yaml:7:37: ProxyConfig p: spec.scheduler.pools[0].queueScoreSpan: "
            "must be >= 0 (got -1)");
  auto r3 = load_bad(proxy("  scheduler: {retryAfterSeconds: 0}\n"));
  CHECK_HAS(errors(r3), "spec.scheduler.retryAfterSeconds: must be between 1 and 3600 (got 0)");
}

TEST_CASE("ProxyConfig: loraFreeSlotScore and saturation.prefixHeadroom") {
  auto s = load_ok(proxy(R"(  scheduler:
    loraFreeSlotScore: 0.9
    saturation: {prefixHeadroom: 1.5}
    pools:
    - {name: llama, loraFreeSlotScore: 1, saturation: {prefixHeadroom: 0}}
)"));
  const SchedulerConfig& c = s->proxy.scheduler;
  CHECK(c.defaults.lora_free_slot_score == doctest::Approx(0.9));
  CHECK(c.defaults.prefix_headroom == 1.5);
  REQUIRE(c.pools.count("default/llama") == 1);
  CHECK(c.pools.at("default/llama").lora_free_slot_score == 1.0);
  CHECK(c.pools.at("default/llama").prefix_headroom == 0.0);
  CHECK_FALSE(load_ok(proxy("  scheduler: {}\n"))->proxy.scheduler.defaults.prefix_headroom);

  auto r = load_bad(proxy(R"(  scheduler:
    loraFreeSlotScore: 1.5
    saturation: {prefixHeadroom: -1}
)"));
  auto e = errors(r);
  CHECK_HAS(e, "spec.scheduler.loraFreeSlotScore: must be");
  CHECK_HAS(e, "spec.scheduler.saturation.prefixHeadroom: must be >= 0 (got -1)");
}

TEST_CASE("ProxyConfig: scheduler numbers are typed") {
  auto r = load_bad(proxy(R"(  scheduler:
    queueScoreSpan: "5"
    inFlightScoreSpan: many
    weights: {queue: .inf, kvCache: [1]}
    debugHeader: yes
    legacy: {criticalPriority: 1.5}
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "spec.scheduler.queueScoreSpan: must be a number, not the string \"5\" (remove the "
            "quotes)");
  CHECK_HAS(e, "spec.scheduler.inFlightScoreSpan: must be a number (got \"many\")");
  CHECK_HAS(e, "spec.scheduler.weights.queue: must be a number (got \".inf\")");
  CHECK_HAS(e, "spec.scheduler.weights.kvCache: must be a number, not a list");
  CHECK_HAS(e, "spec.scheduler.debugHeader: must be true or false (got \"yes\")");
  CHECK_HAS(e, "spec.scheduler.legacy.criticalPriority: must be an integer (got \"1.5\")");
  CHECK_MESSAGE(e.size() == 6, joined(e));
}

TEST_CASE("ProxyConfig: unknown scheduler fields get hints") {
  auto r = load_bad(proxy(R"(  scheduler:
    weights: {kvcache: 1}
    saturation: {kvCacheTreshold: 0.5}
    pools:
    - {name: llama, prefixIndexBytes: 1Mi}
    flowcontrol: {}
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:6:15: ProxyConfig p: spec.scheduler.weights.kvcache: unknown field (did "
            "you mean \"kvCache\"?)");
  CHECK_HAS(e,
            "spec.scheduler.saturation.kvCacheTreshold: unknown field (did you mean "
            "\"kvCacheThreshold\"?)");
  // Process-wide settings are not per pool.
  CHECK_HAS(e,
            "test.yaml:9:21: ProxyConfig p: spec.scheduler.pools[0].prefixIndexBytes: unknown "
            "field");
  CHECK_HAS(e, "spec.scheduler.flowcontrol: unknown field (did you mean \"flowControl\"?)");
  CHECK_MESSAGE(e.size() == 4, joined(e));
}

TEST_CASE("ProxyConfig: scheduler pools must name a defined InferencePool, once") {
  auto r = load_bad(proxy(R"(  scheduler:
    pools:
    - name: lama
      profile: random
    - name: other
    - name: prod/llama
    - {profile: random}
    - name: a/b/c
)"));
  auto e = errors(r);
  CHECK_HAS(e,
            "test.yaml:7:13: ProxyConfig p: spec.scheduler.pools[0].name: InferencePool "
            "default/lama not found (did you mean \"llama\"?)");
  CHECK_HAS(e,
            "test.yaml:9:13: ProxyConfig p: spec.scheduler.pools[1].name: InferencePool "
            "default/other not found (pools: default/llama)");
  CHECK_HAS(e,
            "test.yaml:10:13: ProxyConfig p: spec.scheduler.pools[2].name: InferencePool "
            "prod/llama not found (did you mean \"default/llama\"?)");
  CHECK_HAS(e,
            "test.yaml:11:7: ProxyConfig p: spec.scheduler.pools[3].name: required field is "
            "missing");
  CHECK_HAS(e, "spec.scheduler.pools[4].name: \"a/b/c\" must be a pool name or \"namespace/name\"");
  CHECK_MESSAGE(e.size() == 5, joined(e));

  // A bare name means namespace "default"; a pool elsewhere is named with its namespace.
  auto r2 = load_bad(proxy("  scheduler: {pools: [{name: qwen}]}\n") + R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: qwen, namespace: prod}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8001}]
)");
  CHECK_HAS(errors(r2),
            "spec.scheduler.pools[0].name: InferencePool default/qwen not found "
            "(InferencePool prod/qwen exists; a bare name means namespace "
            "\"default\": write \"prod/qwen\")");

  auto dup = load_bad(proxy(R"(  scheduler:
    pools:
    - {name: llama, profile: random}
    - {name: default/llama, profile: gie-default}
)"));
  auto d = errors(dup);
  CHECK_HAS(d,
            "test.yaml:8:14: ProxyConfig p: spec.scheduler.pools[1].name: pool default/llama "
            "is already configured by another entry (line 7)");
  CHECK_MESSAGE(d.size() == 1, joined(d));
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

TEST_CASE("ProxyConfig: discovery") {
  auto d = load_ok(proxy(""));
  CHECK(d->proxy.discovery.dns_interval == milliseconds(5000));
  CHECK(d->proxy.discovery.hosts_file.empty());
  auto s = load_ok(proxy("  discovery: {dns: {interval: 250ms, hostsFile: /tmp/hosts}}\n"));
  CHECK(s->proxy.discovery.dns_interval == milliseconds(250));
  CHECK(s->proxy.discovery.hosts_file == "/tmp/hosts");
  auto r = load_bad(proxy("  discovery: {dns: {intervl: 1s}}\n"));
  CHECK_HAS(errors(r), "spec.discovery.dns.intervl: unknown field (did you mean \"interval\"?)");
}
