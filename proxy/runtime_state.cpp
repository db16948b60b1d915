#include "proxy/runtime_state.h"

#include <algorithm>
#include <set>

#include <boost/asio/ip/address.hpp>

#include "proxy/errors.h"

namespace infergate::proxy {

RuntimeState::RuntimeState(config::SnapshotPtr snapshot, uint64_t gen,
                           std::vector<PoolRuntime> pool_runtimes)
    : config(snapshot), generation(gen), resolver(snapshot), pools(std::move(pool_runtimes)) {
  // GET /v1/models: every model name a client may ask for, once, in config order.
  std::set<std::string> seen;
  models_json = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& m : config->models) {
    if (!seen.insert(m.model_name).second) continue;
    if (!first) models_json += ',';
    first = false;
    models_json += "{\"id\":\"";
    append_json_escaped(models_json, m.model_name);
    models_json += "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"infergate\",\"pool\":\"";
    append_json_escaped(models_json, m.pool);
    models_json += "\"}";
  }
  models_json += "]}";
}

const PoolRuntime* RuntimeState::find_pool(std::string_view key) const {
  for (const auto& p : pools)
    if (p.key == key) return &p;
  return nullptr;
}

routing::SchedulerConfig scheduler_config_for(const config::SchedulerConfig& cfg,
                                              const std::string& pool_key,
                                              std::chrono::milliseconds staleness) {
  const config::SchedulerTunables* over = nullptr;
  if (auto it = cfg.pools.find(pool_key); it != cfg.pools.end()) over = &it->second;
  const std::string profile_name = cfg.profile_for(pool_key);
  const auto profile = routing::parse_profile(profile_name).value_or(routing::Profile::kDefault);
  routing::SchedulerConfig out = routing::SchedulerConfig::defaults_for(profile);
  out.saturation.metrics_staleness = staleness;
  // Applies one layer of tunables: spec.scheduler first, then the pool's own.
  auto apply = [&out](const config::SchedulerTunables& t) {
    if (t.weight_queue) out.weights.queue = *t.weight_queue;
    if (t.weight_kv_cache) out.weights.kv_cache = *t.weight_kv_cache;
    if (t.weight_prefix) out.weights.prefix = *t.weight_prefix;
    if (t.weight_lora) out.weights.lora = *t.weight_lora;
    if (t.weight_in_flight) out.weights.in_flight = *t.weight_in_flight;
    if (t.queue_score_span) out.queue_score_span = *t.queue_score_span;
    if (t.in_flight_score_span) out.in_flight_score_span = *t.in_flight_score_span;
    if (t.lora_free_slot_score) out.lora_free_slot_score = *t.lora_free_slot_score;
    if (t.queue_depth_threshold) out.saturation.queue_depth_threshold = *t.queue_depth_threshold;
    if (t.kv_cache_threshold) out.saturation.kv_cache_threshold = *t.kv_cache_threshold;
    if (t.headroom) out.saturation.headroom = *t.headroom;
    if (t.prefix_headroom) out.saturation.prefix_headroom = *t.prefix_headroom;
    if (t.metrics_staleness) out.saturation.metrics_staleness = *t.metrics_staleness;
    if (t.prefix_auto_tune) out.prefix.auto_tune = *t.prefix_auto_tune;
    if (t.prefix_block_size_tokens) out.prefix.block_size_tokens = *t.prefix_block_size_tokens;
    if (t.prefix_bytes_per_token) out.prefix.bytes_per_token = *t.prefix_bytes_per_token;
    if (t.prefix_max_blocks) out.prefix.max_blocks = *t.prefix_max_blocks;
    if (t.prefix_lru_capacity_per_server)
      out.prefix.default_capacity_blocks = *t.prefix_lru_capacity_per_server;
    if (t.legacy_queueing_threshold_lora)
      out.legacy.queueing_threshold_lora = *t.legacy_queueing_threshold_lora;
    if (t.legacy_queue_threshold_critical)
      out.legacy.queue_threshold_critical = *t.legacy_queue_threshold_critical;
    if (t.legacy_critical_priority) out.legacy.critical_priority = *t.legacy_critical_priority;
    if (t.legacy_kv_cache_threshold) out.legacy.kv_cache_threshold = *t.legacy_kv_cache_threshold;
    if (t.legacy_lora_affinity_threshold)
      out.legacy.lora_affinity_threshold = *t.legacy_lora_affinity_threshold;
  };
  apply(cfg.defaults);
  if (over) apply(*over);
  return out;
}

namespace {

// One endpoint per DNS address (issue 7 §2); IP literals and unresolved names as they are.
std::vector<config::Endpoint> expand(const std::vector<config::Endpoint>& endpoints,
                                     const DnsResults& dns) {
  std::vector<config::Endpoint> out;
  out.reserve(endpoints.size());
  for (const auto& ep : endpoints) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(ep.host, ec);
    const auto it = ec ? dns.find(ep.host) : dns.end();
    if (it == dns.end()) {
      out.push_back(ep);
      continue;
    }
    for (const auto& ip : it->second) {
      config::Endpoint e = ep;
      e.host = ip;
      e.name = ep.name + "@" + ip;
      e.key = ep.pool + "|" + e.name + "|" + ip + ":" + std::to_string(ep.port);
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace

RuntimeStatePtr StateBuilder::build(
    config::SnapshotPtr snapshot, const DnsResults& dns,
    const std::map<std::string, std::vector<config::Endpoint>>& discovered) {
  std::lock_guard lock(mu_);
  const auto& sched = snapshot->proxy.scheduler;
  if (!prefix_index_) {
    prefix_index_ = std::make_shared<routing::PrefixIndex>(
        std::max<size_t>(sched.prefix_index_bytes, routing::PrefixIndex::min_budget_bytes()));
  }
  std::vector<config::Endpoint> endpoints;
  for (const auto& ep : expand(snapshot->endpoints, dns))
    if (!discovered.count(ep.pool)) endpoints.push_back(ep);
  for (const auto& [pool, eps] : discovered)
    endpoints.insert(endpoints.end(), eps.begin(), eps.end());
  std::vector<PoolRuntime> pools;
  for (const auto& pool : snapshot->pools) {
    PoolRuntime pr;
    pr.key = config::Snapshot::pool_key(pool.namespace_, pool.name);
    pr.pool = &pool;
    for (const auto& ep : endpoints) {
      if (ep.pool != pr.key) continue;
      std::shared_ptr<EndpointRuntime> rt;
      if (auto it = endpoints_.find(ep.key); it != endpoints_.end()) rt = it->second.lock();
      if (!rt) {
        rt = std::make_shared<EndpointRuntime>();
        rt->id = next_endpoint_id_++;
        rt->endpoint = ep;
        endpoints_[ep.key] = rt;
      }
      pr.endpoints.push_back(std::move(rt));
    }
    pr.scheduler = std::make_unique<const routing::Scheduler>(
        scheduler_config_for(sched, pr.key, snapshot->proxy.model_server_metrics.stale_after),
        prefix_index_);
    pools.push_back(std::move(pr));
  }
  // Forget endpoints no snapshot references any more.
  for (auto it = endpoints_.begin(); it != endpoints_.end();) {
    if (it->second.expired())
      it = endpoints_.erase(it);
    else
      ++it;
  }
  return std::make_shared<const RuntimeState>(std::move(snapshot), ++generation_, std::move(pools));
}

}  // namespace infergate::proxy
