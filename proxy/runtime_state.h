#pragma once
// What the request path reads: one immutable RuntimeState per configuration snapshot,
// published through an atomic shared_ptr. Requests keep the state they started with; a reload
// publishes a new one. Per-endpoint counters (EndpointRuntime) are shared between snapshots
// for endpoints that survive a reload, so in-flight counts stay right across the swap.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "routing/model_resolver.h"
#include "routing/prefix_index.h"
#include "routing/scheduler.h"

namespace infergate::proxy {

// Live counters of one endpoint, updated by every worker (relaxed atomics: they feed
// heuristics and reports, not synchronisation).
struct EndpointRuntime {
  uint64_t id = 0;  // process-unique, stable for the endpoint's life (upstream pool key)
  config::Endpoint endpoint;
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> requests_total{0};
  std::atomic<uint64_t> failures_total{0};
  // Dispatched to this endpoint since its last successful scrape (requests and prompt bytes):
  // lets the scheduler correct stale engine numbers during a burst. Reset by the scraper.
  std::atomic<int64_t> dispatched_since_scrape{0};
  std::atomic<int64_t> prompt_bytes_since_scrape{0};
};

struct PoolRuntime {
  std::string key;                              // namespace/name
  const config::InferencePool* pool = nullptr;  // into RuntimeState::config
  std::vector<std::shared_ptr<EndpointRuntime>> endpoints;
  // This pool's profile and tunables; immutable, shared by every worker (its prefix index
  // and round-robin counter are lock-free).
  std::unique_ptr<const routing::Scheduler> scheduler;
};

// config/ tunables (unset = the profile's default) -> routing's scheduler configuration:
// the pool's own overrides on top of spec.scheduler's.
routing::SchedulerConfig scheduler_config_for(const config::SchedulerConfig& cfg,
                                              const std::string& pool_key,
                                              std::chrono::milliseconds staleness);

struct RuntimeState {
  RuntimeState(config::SnapshotPtr snapshot, uint64_t generation,
               std::vector<PoolRuntime> pool_runtimes);

  config::SnapshotPtr config;
  uint64_t generation;
  routing::ModelResolver resolver;
  std::vector<PoolRuntime> pools;
  std::string models_json;  // the body of GET /v1/models, built once

  const PoolRuntime* find_pool(std::string_view key) const;
};

using RuntimeStatePtr = std::shared_ptr<const RuntimeState>;

// Builds RuntimeStates and keeps EndpointRuntime objects alive across reloads by key.
// Thread-safe (called from the reload path only).
// host name -> resolved addresses (proxy/dns_discovery.h).
using DnsResults = std::map<std::string, std::vector<std::string>>;

class StateBuilder {
 public:
  // `dns`: endpoints whose host is a DNS name with results there expand to one endpoint per
  // address ("name@address"); names not resolved yet stay one endpoint resolved at connect.
  // `discovered`: pool key -> endpoints from Kubernetes; they replace that pool's static ones.
  RuntimeStatePtr build(
      config::SnapshotPtr snapshot, const DnsResults& dns = {},
      const std::map<std::string, std::vector<config::Endpoint>>& discovered = {});

 private:
  std::mutex mu_;
  // One process-wide prefix index, sized by the first configuration (its budget is fixed for
  // the process's life: resizing would drop what it learned).
  std::shared_ptr<routing::PrefixIndex> prefix_index_;
  uint64_t generation_ = 0;
  uint64_t next_endpoint_id_ = 1;
  std::unordered_map<std::string, std::weak_ptr<EndpointRuntime>> endpoints_;
  std::vector<uint64_t> live_ids_;  // endpoint ids of the last state built
};

// The published state: workers load() per request, the reload path store()s.
class StateHolder {
 public:
  RuntimeStatePtr load() const { return state_.load(std::memory_order_acquire); }
  void store(RuntimeStatePtr s) { state_.store(std::move(s), std::memory_order_release); }

 private:
  std::atomic<RuntimeStatePtr> state_;
};

}  // namespace infergate::proxy
