#include "proxy/runtime_state.h"

#include <set>

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

RuntimeStatePtr StateBuilder::build(config::SnapshotPtr snapshot) {
  std::lock_guard lock(mu_);
  std::vector<PoolRuntime> pools;
  for (const auto& pool : snapshot->pools) {
    PoolRuntime pr;
    pr.key = config::Snapshot::pool_key(pool.namespace_, pool.name);
    pr.pool = &pool;
    for (const auto& ep : snapshot->endpoints) {
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
