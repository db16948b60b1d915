#pragma once
// The typed, validated, immutable configuration snapshot. Built once per load/reload by
// config::load() (loader.h) and then shared read-only (std::shared_ptr<const Snapshot>) by
// every thread. Nothing here depends on yaml-cpp: only the loader does.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::config {

// Where a value came from, for FILE:LINE:COL messages (1-based line and column).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

// Paths as resolved by the loader: a relative path in a file is made relative to that file's
// directory; the loader checks that both files exist.
struct TlsConfig {
  std::string cert_file;
  std::string key_file;
};

struct ListenerConfig {
  std::string address;  // as written, e.g. "0.0.0.0:8080"
  std::string host;     // "0.0.0.0", "::", "127.0.0.1"
  uint16_t port = 0;    // 0 = pick a free port (tests)
  std::optional<TlsConfig> tls;
};

struct AdminConfig {
  std::string address = "127.0.0.1:9090";
  std::string host = "127.0.0.1";
  uint16_t port = 9090;
  bool enabled = true;
};

// A static "pod". The pool selector matches its labels.
struct StaticEndpointConfig {
  std::string name;
  std::string address;           // as written
  std::string host;              // IP literal or DNS name
  std::optional<uint16_t> port;  // set: overrides the pool's targetPorts
  std::map<std::string, std::string> labels;
  SourceLocation where;
};

// Request-path limits and timeouts (SPEC §4, §5, §9). Durations are wall-clock.
struct LimitsConfig {
  uint64_t max_request_body_bytes = 16ull << 20;     // 413 beyond
  uint32_t max_request_header_bytes = 64u << 10;     // 431 beyond
  uint64_t max_response_body_bytes = 64ull << 20;    // non-streamed JSON bodies we rewrite
  std::chrono::milliseconds header_timeout{10'000};  // 408 when headers are too slow
  std::chrono::milliseconds body_timeout{30'000};    // 408 when the body is too slow
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive idle close
  std::chrono::milliseconds upstream_connect_timeout{5'000};
  std::chrono::milliseconds upstream_response_timeout{300'000};  // first byte; 504 beyond
  std::chrono::milliseconds upstream_idle_timeout{300'000};      // between body reads; 504/abort
  std::chrono::milliseconds drain_timeout{30'000};
  uint32_t max_retries = 2;  // extra attempts on other endpoints, before the first response byte
  uint32_t upstream_max_idle_per_endpoint = 64;  // idle keep-alive connections kept per worker
  // HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients (streams beyond it are
  // refused with RST_STREAM REFUSED_STREAM).
  uint32_t max_concurrent_streams = 100;
};

// The scheduler profiles the loader accepts (routing/scheduler_config.h implements them).
inline constexpr std::string_view kSchedulerProfiles[] = {
    "default", "gie-default", "gie-legacy", "least-request", "round-robin", "random"};

// Scheduler tunables (docs/scheduling.md). Every field is optional: unset means "the profile's
// default" (routing::SchedulerConfig::defaults_for). The proxy copies what is set.
struct SchedulerTunables {
  std::optional<std::string> profile;
  // weights
  std::optional<double> weight_queue, weight_kv_cache, weight_prefix, weight_lora, weight_in_flight;
  std::optional<double> queue_score_span, in_flight_score_span, lora_free_slot_score;
  // saturation (admission and the default profile's filter)
  std::optional<double> queue_depth_threshold, kv_cache_threshold, headroom, prefix_headroom;
  std::optional<std::chrono::milliseconds> metrics_staleness;
  // prefix cache
  std::optional<bool> prefix_auto_tune;
  std::optional<uint32_t> prefix_block_size_tokens, prefix_bytes_per_token, prefix_max_blocks;
  std::optional<uint64_t> prefix_lru_capacity_per_server;
  // gie-legacy thresholds
  std::optional<int> legacy_queueing_threshold_lora, legacy_queue_threshold_critical,
      legacy_critical_priority;
  std::optional<double> legacy_kv_cache_threshold, legacy_lora_affinity_threshold;
};

// Flow control (issue 4 §3): while a pool is saturated, requests of priority >= 0 wait in a
// strict-priority queue instead of going to an overloaded pod. Off by default.
struct FlowControlConfig {
  bool enabled = false;
  uint32_t max_requests = 1000;           // per worker and pool; 429 beyond
  uint64_t max_bytes = 64ull << 20;       // request bodies held, per worker and pool; 429 beyond
  std::chrono::milliseconds ttl{30'000};  // 503 when a request waited this long
};

struct SchedulerConfig {
  SchedulerTunables defaults;  // spec.scheduler.*: every pool
  // spec.scheduler.pools[]: per-pool overrides on top of `defaults`, by pool name
  // ("namespace/name", or a bare name meaning namespace "default").
  std::map<std::string, SchedulerTunables> pools;
  uint64_t prefix_index_bytes = 64ull << 20;  // one process-wide budget for the prefix index
  FlowControlConfig flow_control;
  // Trusted clients may send `x-infergate-debug: scheduling` and get the decision back in the
  // `x-infergate-scheduling` response header. Off by default (it reveals the fleet's state).
  bool debug_header = false;
  uint32_t retry_after_seconds = 1;  // Retry-After on 429 (shed, queue full)

  // The profile name a pool uses.
  std::string profile_for(const std::string& pool_key) const {
    if (auto it = pools.find(pool_key); it != pools.end() && it->second.profile)
      return *it->second.profile;
    return defaults.profile.value_or("default");
  }
};

// The engine metric names a pool's pods expose (SPEC §7). An endpoint label
// inference.networking.k8s.io/engine-type overrides the default per endpoint.
inline constexpr std::string_view kEngineTypes[] = {"auto", "vllm", "sglang", "trtllm"};

// Scraping of the model servers' Prometheus endpoints (SPEC §7).
struct ModelServerMetricsConfig {
  bool enabled = true;
  std::chrono::milliseconds interval{50};      // how often each endpoint is scraped
  std::chrono::milliseconds timeout{1'000};    // one scrape, connect included
  std::chrono::milliseconds stale_after{200};  // older metrics count as saturated (SPEC §6)
  std::string path = "/metrics";
  // Default for endpoints without the label; "auto" recognises the engine from the names on
  // the page (vLLM when none is recognised).
  std::string engine_type = "auto";
};

// Endpoint discovery. A static endpoint whose address is a DNS name stands for every A/AAAA
// record of that name (a Kubernetes headless Service, `docker compose --scale`), re-resolved
// every `dns_interval`; endpoints come and go as the records change.
struct DiscoveryConfig {
  std::chrono::milliseconds dns_interval{5'000};
  // An /etc/hosts-style file consulted before DNS, re-read at every resolution (local
  // development, tests, pinning names without a DNS server). Empty: none.
  std::string hosts_file;
  // Kubernetes: each InferencePool's endpoints are the Ready, non-terminating pods matching its
  // selector in its namespace (pod IP x targetPorts), from a list + watch of the API server;
  // static endpoints of such pools are ignored once the first list arrived.
  bool kubernetes = false;
  // Empty: in-cluster service account, else $KUBECONFIG, else ~/.kube/config.
  std::string kubeconfig;
};

struct ProxyConfig {
  std::string name;
  uint32_t workers = 0;  // 0 = std::thread::hardware_concurrency()
  std::vector<ListenerConfig> listeners;
  AdminConfig admin;
  std::vector<StaticEndpointConfig> endpoints;
  LimitsConfig limits;
  SchedulerConfig scheduler;
  ModelServerMetricsConfig model_server_metrics;
  DiscoveryConfig discovery;
  SourceLocation where;
};

enum class AppProtocol { kHttp, kH2c };
enum class FailureMode { kFailOpen, kFailClose };
enum class Criticality { kCritical, kStandard, kSheddable };

inline int criticality_priority(Criticality c) {
  switch (c) {
    case Criticality::kCritical:
      return 1;
    case Criticality::kStandard:
      return 0;
    case Criticality::kSheddable:
      return -1;
  }
  return 0;
}

struct InferencePool {
  std::string name;
  std::string namespace_;   // metadata.namespace, "default" when absent
  std::string api_version;  // which GIE shape it came from
  std::map<std::string, std::string> selector;
  std::vector<uint16_t> target_ports;  // 1..8
  AppProtocol app_protocol = AppProtocol::kHttp;
  FailureMode failure_mode = FailureMode::kFailClose;  // GIE default
  SourceLocation where;
};

struct WeightedTarget {
  std::string model;    // the name sent upstream
  uint32_t weight = 1;  // GIE: all-or-none; when none are given every weight is 1
};

// One model name a client may ask for, from an InferenceModel or an InferenceModelRewrite
// rule. Resolution (routing/) reads these.
struct ModelRoute {
  std::string model_name;               // what the client sends in "model"
  std::string pool;                     // index key: namespace/name of the InferencePool
  std::vector<WeightedTarget> targets;  // empty: pass the name through unchanged
  std::optional<Criticality> criticality;
  // "InferenceModel", "InferenceModelRewrite", or "InferenceObjective" for the transitional
  // shape that puts modelName/targetModels on an InferenceObjective.
  std::string source_kind;
  std::string source_name;  // namespace/name of the document
  SourceLocation where;
  // Routes from an InferenceObjective (transitional shape): that objective's spec.priority
  // (0 when unset). When set it takes the place of criticality in SPEC §3.4.
  std::optional<int> priority;
  // An InferenceModelRewrite rule with no matches: it applies, in `pool`, to every model no
  // other route of that pool matches (GIE "generic fallback"). model_name is empty then.
  // At most one per pool (oldest wins).
  bool catch_all = false;
};

struct InferenceObjective {
  std::string name;
  std::string namespace_;
  int priority = 0;
  std::string pool;  // namespace/name
  SourceLocation where;
};

// A resolved endpoint: one static endpoint selected by one pool, on one port.
struct Endpoint {
  std::string key;   // unique and stable across reloads: "pool-key|name|host:port"
  std::string name;  // the static endpoint's name (with ":port" appended when a pool has
                     // several target ports)
  std::string pool;  // namespace/name
  std::string host;
  uint16_t port = 0;
  std::map<std::string, std::string> labels;
};

struct Snapshot {
  std::vector<std::string> sources;  // files read, in order
  ProxyConfig proxy;
  std::vector<InferencePool> pools;  // in document order
  std::vector<ModelRoute> models;    // unique per (pool, model_name): oldest wins
  std::vector<InferenceObjective> objectives;
  std::vector<Endpoint> endpoints;  // grouped by pool, pools in order

  static std::string pool_key(const std::string& ns, const std::string& name) {
    return ns + "/" + name;
  }
  const InferencePool* find_pool(const std::string& key) const {
    for (const auto& p : pools)
      if (pool_key(p.namespace_, p.name) == key) return &p;
    return nullptr;
  }
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace infergate::config
