// Reads the infergate.io/v1alpha1 ProxyConfig document. Unknown fields are errors here (the
// document is ours, so an unknown field is a typo), with a "did you mean" hint.

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "config/documents.h"
#include "config/values.h"

namespace infergate::config::detail {
namespace {

const HostPortRules kListenRules{
    .require_port = true, .allow_port_zero = true, .require_ip = true, .allow_empty_host = true};
const HostPortRules kEndpointRules{};

// A size field: an integer number of bytes or "16Mi"-style text, at least `min`.
template <typename T>
void read_size_into(DocContext& ctx, const Field& field, uint64_t min, T* out) {
  if (!field.present()) return;
  if (!field.value.IsScalar()) {
    ctx.error(field.where, field.path, "must be a size such as 1048576, \"64Ki\" or \"16Mi\"");
    return;
  }
  auto parsed = parse_size(field.value.Scalar());
  if (!parsed) {
    ctx.error(field.where, field.path, parsed.error);
    return;
  }
  const uint64_t max = std::numeric_limits<T>::max();
  if (*parsed.value < min || *parsed.value > max) {
    ctx.error(field.where, field.path,
              fmt::format("must be between {} and {} bytes (got {})", min, max, *parsed.value));
    return;
  }
  *out = static_cast<T>(*parsed.value);
}

// `Out`: std::chrono::milliseconds or std::optional of it.
template <typename Out>
void read_duration_into(DocContext& ctx, const Field& field, bool allow_zero, Out* out) {
  if (!field.present()) return;
  if (!field.value.IsScalar()) {
    ctx.error(field.where, field.path,
              "must be a duration such as \"250ms\", \"10s\" or \"1m30s\"");
    return;
  }
  auto parsed = parse_duration(field.value.Scalar());
  if (!parsed) {
    ctx.error(field.where, field.path, parsed.error);
    return;
  }
  if (!allow_zero && parsed.value->count() == 0) {
    ctx.error(field.where, field.path, "must be greater than zero");
    return;
  }
  *out = *parsed.value;
}

template <typename T>
void read_int_into(DocContext& ctx, const Field& field, int64_t min, int64_t max, T* out) {
  if (auto v = read_int(ctx, field, min, max)) *out = static_cast<T>(*v);
}

std::optional<HostPort> read_address(DocContext& ctx, const Field& field,
                                     const HostPortRules& rules) {
  auto text = read_nonempty_string(ctx, field);
  if (!text) return std::nullopt;
  auto parsed = parse_host_port(*text, rules);
  if (!parsed) {
    ctx.error(field.where, field.path, parsed.error);
    return std::nullopt;
  }
  return *parsed.value;
}

void read_tls(DocContext& ctx, const Field& field, ListenerConfig& listener) {
  MapReader tls(ctx, field, {"certFile", "keyFile"});
  if (!tls.valid()) return;
  TlsConfig out;
  bool ok = true;
  using Item = std::pair<const char*, std::string*>;
  for (auto [key, target] : {Item{"certFile", &out.cert_file}, Item{"keyFile", &out.key_file}}) {
    Field f = tls.require(key);
    auto path = f.present() ? read_nonempty_string(ctx, f) : std::nullopt;
    if (!path) {
      ok = false;
      continue;
    }
    std::filesystem::path resolved(*path);
    if (resolved.is_relative() && !ctx.base_dir().empty())
      resolved = std::filesystem::path(ctx.base_dir()) / resolved;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(resolved, ec)) {
      ctx.error(f.where, f.path,
                fmt::format("file \"{}\" not found{}", resolved.string(),
                            resolved.string() != *path
                                ? " (relative paths are relative to the configuration file)"
                                : ""));
      ok = false;
    }
    *target = resolved.string();
  }
  if (ok) listener.tls = out;
}

void read_listeners(DocContext& ctx, const Field& field, ProxyConfig& config) {
  if (!field.present()) {
    config.listeners.push_back(ListenerConfig{"0.0.0.0:8080", "0.0.0.0", 8080, std::nullopt});
    return;
  }
  auto items = read_sequence(ctx, field);
  if (!items) return;
  if (items->empty()) {
    ctx.error(field.where, field.path,
              "must list at least one listener (leave it out for the default 0.0.0.0:8080)");
    return;
  }
  std::map<std::string, SourceLocation> seen;  // "host:port" with a fixed port
  for (const Field& item : *items) {
    MapReader listener(ctx, item, {"address", "tls"});
    if (!listener.valid()) {
      if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
      continue;
    }
    Field address = listener.require("address");
    auto hp = read_address(ctx, address, kListenRules);
    ListenerConfig out;
    read_tls(ctx, listener.get("tls"), out);
    if (!hp) continue;
    out.address = address.value.Scalar();
    out.host = hp->host;
    out.port = *hp->port;
    if (out.port != 0) {
      std::string key = join_host_port(out.host, out.port);
      auto [it, inserted] = seen.emplace(key, address.where);
      if (!inserted)
        ctx.error(
            address.where, address.path,
            fmt::format("{} is already used by another listener (line {})", key, it->second.line));
    }
    config.listeners.push_back(std::move(out));
  }
}

void read_admin(DocContext& ctx, const Field& field, ProxyConfig& config) {
  MapReader admin(ctx, field, {"address", "enabled"});
  if (!admin.valid()) return;
  if (auto enabled = read_bool(ctx, admin.get("enabled"))) config.admin.enabled = *enabled;
  Field address = admin.get("address");
  if (auto hp = read_address(ctx, address, kListenRules)) {
    config.admin.address = address.value.Scalar();
    config.admin.host = hp->host;
    config.admin.port = *hp->port;
    if (config.admin.enabled && config.admin.port != 0) {
      for (const auto& l : config.listeners) {
        if (l.port == config.admin.port && l.host == config.admin.host) {
          ctx.error(address.where, address.path,
                    fmt::format("{} is also a listener address", config.admin.address));
          break;
        }
      }
    }
  }
}

void read_endpoints(DocContext& ctx, const Field& field, ProxyConfig& config) {
  auto items = read_sequence(ctx, field);
  if (!items) return;
  std::map<std::string, SourceLocation> names;
  std::map<std::string, std::string> addresses;  // host[:port] -> endpoint name
  for (const Field& item : *items) {
    MapReader ep(ctx, item, {"name", "address", "labels"});
    if (!ep.valid()) {
      if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
      continue;
    }
    StaticEndpointConfig out;
    out.where = item.where;
    Field name = ep.require("name");
    if (auto n = name.present() ? read_nonempty_string(ctx, name) : std::nullopt) {
      if (n->find_first_of("| \t\r\n") != std::string::npos) {
        ctx.error(name.where, name.path, fmt::format("\"{}\" must not contain spaces or '|'", *n));
      } else {
        auto [it, inserted] = names.emplace(*n, name.where);
        if (!inserted)
          ctx.error(name.where, name.path,
                    fmt::format("duplicate endpoint name \"{}\" (first at line {})", *n,
                                it->second.line));
      }
      out.name = *n;
    }
    Field address = ep.require("address");
    if (auto hp = read_address(ctx, address, kEndpointRules)) {
      out.address = address.value.Scalar();
      out.host = hp->host;
      out.port = hp->port;
      std::string key = hp->port ? join_host_port(hp->host, *hp->port) : hp->host;
      auto [it, inserted] = addresses.emplace(key, out.name);
      if (!inserted)
        ctx.warning(address.where, address.path,
                    fmt::format("endpoint \"{}\" has the same address as endpoint \"{}\"", out.name,
                                it->second));
    }
    if (auto labels = read_string_map(ctx, ep.get("labels"))) out.labels = std::move(*labels);
    config.endpoints.push_back(std::move(out));
  }
}

void read_limits(DocContext& ctx, const Field& field, LimitsConfig& limits) {
  MapReader m(ctx, field,
              {"maxRequestBodyBytes", "maxRequestHeaderBytes", "maxResponseBodyBytes",
               "headerTimeout", "bodyTimeout", "idleTimeout", "upstreamConnectTimeout",
               "upstreamResponseTimeout", "upstreamIdleTimeout", "drainTimeout", "maxRetries",
               "upstreamMaxIdlePerEndpoint", "maxConcurrentStreams"});
  if (!m.valid()) return;
  read_size_into(ctx, m.get("maxRequestBodyBytes"), 1, &limits.max_request_body_bytes);
  read_size_into(ctx, m.get("maxRequestHeaderBytes"), 1024, &limits.max_request_header_bytes);
  read_size_into(ctx, m.get("maxResponseBodyBytes"), 1, &limits.max_response_body_bytes);
  read_duration_into(ctx, m.get("headerTimeout"), false, &limits.header_timeout);
  read_duration_into(ctx, m.get("bodyTimeout"), false, &limits.body_timeout);
  read_duration_into(ctx, m.get("idleTimeout"), false, &limits.idle_timeout);
  read_duration_into(ctx, m.get("upstreamConnectTimeout"), false, &limits.upstream_connect_timeout);
  read_duration_into(ctx, m.get("upstreamResponseTimeout"), false,
                     &limits.upstream_response_timeout);
  read_duration_into(ctx, m.get("upstreamIdleTimeout"), false, &limits.upstream_idle_timeout);
  read_duration_into(ctx, m.get("drainTimeout"), true, &limits.drain_timeout);
  read_int_into(ctx, m.get("maxRetries"), 0, 100, &limits.max_retries);
  read_int_into(ctx, m.get("upstreamMaxIdlePerEndpoint"), 0, 1'000'000,
                &limits.upstream_max_idle_per_endpoint);
  read_int_into(ctx, m.get("maxConcurrentStreams"), 1, 1'000'000, &limits.max_concurrent_streams);
}

// The bounds of a floating-point field; each side open or closed.
struct NumberRange {
  double min = -std::numeric_limits<double>::infinity();
  bool min_open = false;  // value > min (else >=)
  double max = std::numeric_limits<double>::infinity();
  bool max_open = false;  // value < max (else <=)

  bool contains(double v) const {
    return (min_open ? v > min : v >= min) && (max_open ? v < max : v <= max);
  }
  std::string describe() const {
    if (std::isinf(max)) return fmt::format("must be {} {}", min_open ? ">" : ">=", min);
    return fmt::format("must be in {}{}, {}{}", min_open ? "(" : "[", min, max,
                       max_open ? ")" : "]");
  }
};

constexpr NumberRange kNonNegative{.min = 0};
constexpr NumberRange kPositive{.min = 0, .min_open = true};
constexpr NumberRange kFractionOpenZero{.min = 0, .min_open = true, .max = 1};  // (0, 1]
constexpr NumberRange kFraction{.min = 0, .max = 1};                            // [0, 1]

void read_number_into(DocContext& ctx, const Field& field, const NumberRange& range,
                      std::optional<double>* out) {
  auto v = read_number(ctx, field);
  if (!v) return;
  if (!range.contains(*v)) {
    ctx.error(field.where, field.path,
              fmt::format("{} (got {})", range.describe(), field.value.Scalar()));
    return;
  }
  *out = *v;
}

template <typename T>
void read_int_into(DocContext& ctx, const Field& field, int64_t min, int64_t max,
                   std::optional<T>* out) {
  if (auto v = read_int(ctx, field, min, max)) *out = static_cast<T>(*v);
}

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr int64_t kUint32Max = std::numeric_limits<uint32_t>::max();

void read_profile(DocContext& ctx, const Field& profile, std::optional<std::string>* out) {
  auto name = read_string(ctx, profile);
  if (!name) return;
  for (auto known : kSchedulerProfiles) {
    if (known == *name) {
      *out = *name;
      return;
    }
  }
  std::string message = fmt::format("unknown scheduler profile \"{}\" (valid: {})", *name,
                                    join_alternatives(kSchedulerProfiles));
  if (auto hint = closest_match(*name, kSchedulerProfiles))
    message += fmt::format("; did you mean \"{}\"?", *hint);
  ctx.error(profile.where, profile.path, message);
}

// The tunables a pool may override: the same keys at spec.scheduler and in each
// spec.scheduler.pools[] entry (docs/scheduling.md gives their meaning).
void read_tunables(DocContext& ctx, const MapReader& m, SchedulerTunables& t) {
  read_profile(ctx, m.get("profile"), &t.profile);

  MapReader w(ctx, m.get("weights"),
              {"queue", "kvCache", "prefixCache", "loraAffinity", "inFlight"});
  if (w.valid()) {
    read_number_into(ctx, w.get("queue"), kNonNegative, &t.weight_queue);
    read_number_into(ctx, w.get("kvCache"), kNonNegative, &t.weight_kv_cache);
    read_number_into(ctx, w.get("prefixCache"), kNonNegative, &t.weight_prefix);
    read_number_into(ctx, w.get("loraAffinity"), kNonNegative, &t.weight_lora);
    read_number_into(ctx, w.get("inFlight"), kNonNegative, &t.weight_in_flight);
  }
  read_number_into(ctx, m.get("queueScoreSpan"), kNonNegative, &t.queue_score_span);
  read_number_into(ctx, m.get("inFlightScoreSpan"), kNonNegative, &t.in_flight_score_span);
  read_number_into(ctx, m.get("loraFreeSlotScore"), kFraction, &t.lora_free_slot_score);

  MapReader sat(ctx, m.get("saturation"),
                {"queueDepthThreshold", "kvCacheThreshold", "metricsStalenessThreshold", "headroom",
                 "prefixHeadroom"});
  if (sat.valid()) {
    read_number_into(ctx, sat.get("queueDepthThreshold"), kPositive, &t.queue_depth_threshold);
    read_number_into(ctx, sat.get("kvCacheThreshold"), kFractionOpenZero, &t.kv_cache_threshold);
    read_duration_into(ctx, sat.get("metricsStalenessThreshold"), false, &t.metrics_staleness);
    read_number_into(ctx, sat.get("headroom"), kNonNegative, &t.headroom);
    read_number_into(ctx, sat.get("prefixHeadroom"), kNonNegative, &t.prefix_headroom);
  }

  MapReader prefix(
      ctx, m.get("prefixCache"),
      {"autoTune", "blockSizeTokens", "bytesPerToken", "maxPrefixBlocks", "lruCapacityPerServer"});
  if (prefix.valid()) {
    if (auto v = read_bool(ctx, prefix.get("autoTune"))) t.prefix_auto_tune = *v;
    read_int_into(ctx, prefix.get("blockSizeTokens"), 1, kUint32Max, &t.prefix_block_size_tokens);
    read_int_into(ctx, prefix.get("bytesPerToken"), 1, kUint32Max, &t.prefix_bytes_per_token);
    read_int_into(ctx, prefix.get("maxPrefixBlocks"), 1, 4096, &t.prefix_max_blocks);
    read_int_into(ctx, prefix.get("lruCapacityPerServer"), 1, std::numeric_limits<int64_t>::max(),
                  &t.prefix_lru_capacity_per_server);
  }

  MapReader legacy(ctx, m.get("legacy"),
                   {"queueingThresholdLoRA", "queueThresholdCritical", "kvCacheThreshold",
                    "loraAffinityThreshold", "criticalPriority"});
  if (legacy.valid()) {
    read_int_into(ctx, legacy.get("queueingThresholdLoRA"), 0, kIntMax,
                  &t.legacy_queueing_threshold_lora);
    read_int_into(ctx, legacy.get("queueThresholdCritical"), 0, kIntMax,
                  &t.legacy_queue_threshold_critical);
    read_number_into(ctx, legacy.get("kvCacheThreshold"), kFractionOpenZero,
                     &t.legacy_kv_cache_threshold);
    read_number_into(ctx, legacy.get("loraAffinityThreshold"), kFraction,
                     &t.legacy_lora_affinity_threshold);
    read_int_into(ctx, legacy.get("criticalPriority"), std::numeric_limits<int>::min(), kIntMax,
                  &t.legacy_critical_priority);
  }
}

void read_flow_control(DocContext& ctx, const Field& field, FlowControlConfig& out) {
  MapReader m(ctx, field, {"enabled", "maxRequests", "maxBytes", "ttl"});
  if (!m.valid()) return;
  if (auto enabled = read_bool(ctx, m.get("enabled"))) out.enabled = *enabled;
  read_int_into(ctx, m.get("maxRequests"), 1, kUint32Max, &out.max_requests);
  read_size_into(ctx, m.get("maxBytes"), 1, &out.max_bytes);
  read_duration_into(ctx, m.get("ttl"), false, &out.ttl);
}

// spec.scheduler.pools: per-pool overrides. Whether each named pool exists is checked across
// documents (resolver.cpp), from `refs`.
void read_scheduler_pools(DocContext& ctx, const Field& field, SchedulerConfig& scheduler,
                          std::vector<SchedulerPoolRef>& refs) {
  auto items = read_sequence(ctx, field);
  if (!items) return;
  std::map<std::string, SourceLocation> seen;  // pool key -> first entry's name
  for (const Field& item : *items) {
    MapReader entry(ctx, item,
                    {"name", "profile", "weights", "queueScoreSpan", "inFlightScoreSpan",
                     "loraFreeSlotScore", "saturation", "prefixCache", "legacy"});
    if (!entry.valid()) {
      if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
      continue;
    }
    SchedulerTunables tunables;
    read_tunables(ctx, entry, tunables);
    Field name = entry.require("name");
    auto text = name.present() ? read_nonempty_string(ctx, name) : std::nullopt;
    if (!text) continue;
    std::string key;
    size_t slash = text->find('/');
    if (slash == std::string::npos) {
      key = "default/" + *text;
    } else if (slash == 0 || slash + 1 == text->size() ||
               text->find('/', slash + 1) != std::string::npos) {
      ctx.error(name.where, name.path,
                fmt::format("\"{}\" must be a pool name or \"namespace/name\"", *text));
      continue;
    } else {
      key = *text;
    }
    auto [it, inserted] = seen.emplace(key, name.where);
    if (!inserted) {
      ctx.error(name.where, name.path,
                fmt::format("pool {} is already configured by another entry (line {})", key,
                            it->second.line));
      continue;
    }
    refs.push_back(SchedulerPoolRef{key, *text, name.path, name.where});
    scheduler.pools.emplace(key, std::move(tunables));
  }
}

void read_scheduler(DocContext& ctx, const Field& field, SchedulerConfig& scheduler,
                    std::vector<SchedulerPoolRef>& pool_refs) {
  MapReader m(ctx, field,
              {"profile", "weights", "queueScoreSpan", "inFlightScoreSpan", "loraFreeSlotScore",
               "saturation", "prefixCache", "legacy", "prefixIndexBytes", "flowControl",
               "debugHeader", "retryAfterSeconds", "pools"});
  if (!m.valid()) return;
  read_tunables(ctx, m, scheduler.defaults);
  read_size_into(ctx, m.get("prefixIndexBytes"), 131072, &scheduler.prefix_index_bytes);
  read_flow_control(ctx, m.get("flowControl"), scheduler.flow_control);
  if (auto v = read_bool(ctx, m.get("debugHeader"))) scheduler.debug_header = *v;
  read_int_into(ctx, m.get("retryAfterSeconds"), 1, 3600, &scheduler.retry_after_seconds);
  read_scheduler_pools(ctx, m.get("pools"), scheduler, pool_refs);
}

void read_discovery(DocContext& ctx, const Field& field, DiscoveryConfig& out) {
  MapReader m(ctx, field, {"dns", "kubernetes"});
  if (!m.valid()) return;
  MapReader dns(ctx, m.get("dns"), {"interval", "hostsFile"});
  if (dns.valid()) {
    read_duration_into(ctx, dns.get("interval"), false, &out.dns_interval);
    if (auto path = read_string(ctx, dns.get("hostsFile"))) out.hosts_file = *path;
  }
  MapReader kube(ctx, m.get("kubernetes"), {"enabled", "kubeconfig"});
  if (kube.valid()) {
    if (auto enabled = read_bool(ctx, kube.get("enabled"))) out.kubernetes = *enabled;
    if (auto path = read_string(ctx, kube.get("kubeconfig"))) out.kubeconfig = *path;
  }
}

void read_model_server_metrics(DocContext& ctx, const Field& field, ModelServerMetricsConfig& out) {
  MapReader m(ctx, field, {"enabled", "interval", "timeout", "staleAfter", "path", "engineType"});
  if (!m.valid()) return;
  if (auto enabled = read_bool(ctx, m.get("enabled"))) out.enabled = *enabled;
  read_duration_into(ctx, m.get("interval"), false, &out.interval);
  read_duration_into(ctx, m.get("timeout"), false, &out.timeout);
  read_duration_into(ctx, m.get("staleAfter"), false, &out.stale_after);
  Field path = m.get("path");
  if (auto p = read_string(ctx, path)) {
    if (p->empty() || p->front() != '/') {
      ctx.error(path.where, path.path, "must be an absolute path such as /metrics");
    } else {
      out.path = *p;
    }
  }
  Field engine = m.get("engineType");
  if (auto name = read_string(ctx, engine)) {
    bool known = false;
    for (auto e : kEngineTypes) known = known || e == *name;
    if (known) {
      out.engine_type = *name;
    } else {
      std::string message = fmt::format("unknown engine type \"{}\" (valid: {})", *name,
                                        join_alternatives(kEngineTypes));
      if (auto hint = closest_match(*name, kEngineTypes))
        message += fmt::format("; did you mean \"{}\"?", *hint);
      ctx.error(engine.where, engine.path, message);
    }
  }
}

}  // namespace

void read_proxy_config(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs) {
  MapReader doc(ctx, root, "", {"apiVersion", "kind", "metadata", "spec"});
  ParsedProxyConfig out;
  out.config.name = meta.name;
  out.config.where = meta.where;
  out.meta = std::move(meta);
  ProxyConfig& config = out.config;

  MapReader spec(ctx, doc.get("spec"),
                 {"workers", "listeners", "admin", "endpoints", "limits", "scheduler",
                  "modelServerMetrics", "discovery"});
  read_int_into(ctx, spec.get("workers"), 0, 1024, &config.workers);
  read_listeners(ctx, spec.get("listeners"), config);
  read_admin(ctx, spec.get("admin"), config);
  read_endpoints(ctx, spec.get("endpoints"), config);
  read_limits(ctx, spec.get("limits"), config.limits);
  read_scheduler(ctx, spec.get("scheduler"), config.scheduler, out.scheduler_pools);
  read_model_server_metrics(ctx, spec.get("modelServerMetrics"), config.model_server_metrics);
  read_discovery(ctx, spec.get("discovery"), config.discovery);
  docs.proxies.push_back(std::move(out));
}

}  // namespace infergate::config::detail
