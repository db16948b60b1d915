// summary(): what `infergate --check` prints for a valid configuration.

#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "config/loader.h"
#include "config/values.h"

namespace infergate::config {
namespace {

std::string_view to_string(AppProtocol p) {
  return p == AppProtocol::kH2c ? "kubernetes.io/h2c" : "http";
}
std::string_view to_string(FailureMode m) {
  return m == FailureMode::kFailOpen ? "FailOpen" : "FailClose";
}
std::string_view to_string(Criticality c) {
  switch (c) {
    case Criticality::kCritical:
      return "Critical";
    case Criticality::kStandard:
      return "Standard";
    case Criticality::kSheddable:
      return "Sheddable";
  }
  return "?";
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ",";
    out += fmt::format("{}={}", k, v);
  }
  return out.empty() ? "(none)" : out;
}

// " (tunes weights, saturation)": the groups of tunables a pool override sets besides the
// profile; "" when none.
std::string overridden_text(const SchedulerTunables& t) {
  std::vector<std::string_view> groups;
  if (t.weight_queue || t.weight_kv_cache || t.weight_prefix || t.weight_lora || t.weight_in_flight)
    groups.push_back("weights");
  if (t.queue_score_span || t.in_flight_score_span) groups.push_back("score spans");
  if (t.lora_free_slot_score) groups.push_back("loraFreeSlotScore");
  if (t.queue_depth_threshold || t.kv_cache_threshold || t.headroom || t.prefix_headroom ||
      t.metrics_staleness)
    groups.push_back("saturation");
  if (t.prefix_auto_tune || t.prefix_block_size_tokens || t.prefix_bytes_per_token ||
      t.prefix_max_blocks || t.prefix_lru_capacity_per_server)
    groups.push_back("prefixCache");
  if (t.legacy_queueing_threshold_lora || t.legacy_queue_threshold_critical ||
      t.legacy_critical_priority || t.legacy_kv_cache_threshold || t.legacy_lora_affinity_threshold)
    groups.push_back("legacy");
  if (groups.empty()) return {};
  return fmt::format(" (tunes {})", fmt::join(groups, ", "));
}

}  // namespace

std::string summary(const Snapshot& s) {
  const ProxyConfig& p = s.proxy;
  std::string out;
  auto line = [&out](std::string text) {
    out += text;
    out += '\n';
  };

  line(p.name.empty() ? std::string("ProxyConfig") : "ProxyConfig " + p.name);
  if (!s.sources.empty()) line(fmt::format("sources: {}", fmt::join(s.sources, ", ")));
  line(fmt::format("workers: {}", p.workers == 0 ? std::string("auto (hardware threads)")
                                                 : std::to_string(p.workers)));
  for (const auto& l : p.listeners)
    line(fmt::format("listener: {}{}", join_host_port(l.host, l.port),
                     l.tls
                         ? fmt::format(" tls (cert {}, key {})", l.tls->cert_file, l.tls->key_file)
                         : std::string(" (http/1.1)")));
  line(fmt::format("admin: {}", p.admin.enabled ? join_host_port(p.admin.host, p.admin.port)
                                                : std::string("disabled")));
  line(fmt::format("scheduler: {}", p.scheduler.defaults.profile.value_or("default")));
  for (const auto& [key, tunables] : p.scheduler.pools)
    line(fmt::format("  pool {}: {}{}", key, p.scheduler.profile_for(key),
                     overridden_text(tunables)));

  line(fmt::format("pools: {}", s.pools.size()));
  for (const auto& pool : s.pools) {
    const std::string key = Snapshot::pool_key(pool.namespace_, pool.name);
    std::vector<std::string> ports;
    for (auto port : pool.target_ports) ports.push_back(std::to_string(port));
    line(fmt::format("  {} [{}] selector {} ports {} appProtocol {} failureMode {}", key,
                     pool.api_version, labels_text(pool.selector), fmt::join(ports, ","),
                     to_string(pool.app_protocol), to_string(pool.failure_mode)));
    size_t n = 0;
    for (const auto& e : s.endpoints) {
      if (e.pool != key) continue;
      ++n;
      line(fmt::format("    endpoint {} {}", e.name, join_host_port(e.host, e.port)));
    }
    if (n == 0) line("    (no endpoints)");
  }

  line(fmt::format("models: {}", s.models.size()));
  for (const auto& m : s.models) {
    std::string targets;
    if (m.targets.empty()) {
      targets = "pass-through";
    } else {
      std::vector<std::string> parts;
      for (const auto& t : m.targets)
        parts.push_back(fmt::format("{} (weight {})", t.model, t.weight));
      targets = fmt::format("{}", fmt::join(parts, ", "));
    }
    std::string extra;
    if (m.criticality) extra += fmt::format(" criticality {}", to_string(*m.criticality));
    if (m.priority) extra += fmt::format(" priority {}", *m.priority);
    line(fmt::format("  {} -> {}: {}{} [{} {}]", m.catch_all ? "* (any other model)" : m.model_name,
                     m.pool, targets, extra, m.source_kind, m.source_name));
  }

  line(fmt::format("objectives: {}", s.objectives.size()));
  for (const auto& o : s.objectives)
    line(fmt::format("  {} priority {} pool {}", o.name, o.priority, o.pool));
  return out;
}

}  // namespace infergate::config
