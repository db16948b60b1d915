// The checks that need every document at once: exactly one ProxyConfig, unique pools, poolRef
// targets, model names unique per pool (oldest wins), and the resolution of static endpoints
// into pool members. Produces the Snapshot when nothing was an error.

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "config/documents.h"
#include "config/values.h"

namespace infergate::config::detail {

bool older(const DocMeta& a, const DocMeta& b) {
  if (a.created.has_value() != b.created.has_value()) return a.created.has_value();
  if (a.created && *a.created != *b.created) return *a.created < *b.created;
  return a.order < b.order;
}

namespace {

std::string loc(const SourceLocation& w) {
  return fmt::format("{}:{}:{}", w.file, w.line, w.column);
}

std::string join_labels(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ",";
    out += fmt::format("{}={}", k, v);
  }
  return out.empty() ? "(empty)" : out;
}

class Resolver {
 public:
  Resolver(Documents& docs, Diagnostics& diags) : docs_(docs), diags_(diags) {}

  SnapshotPtr run() {
    auto snapshot = std::make_shared<Snapshot>();
    snapshot->sources = docs_.sources;
    pick_proxy_config(*snapshot);
    index_pools(*snapshot);
    check_scheduler_pools();
    drop_redefinitions();
    resolve_models(*snapshot);
    resolve_objectives(*snapshot);
    if (!docs_.proxies.empty()) resolve_endpoints(*snapshot);
    if (diags_.has_errors()) return nullptr;
    return snapshot;
  }

 private:
  void error(const SourceLocation& w, const DocMeta& meta, std::string_view path,
             std::string_view message) {
    add(Severity::kError, w, meta.label, path, message);
  }
  void warning(const SourceLocation& w, const DocMeta& meta, std::string_view path,
               std::string_view message) {
    add(Severity::kWarning, w, meta.label, path, message);
  }
  void add(Severity severity, const SourceLocation& w, std::string_view label,
           std::string_view path, std::string_view message) {
    std::string text;
    if (!label.empty()) text = fmt::format("{}: ", label);
    if (!path.empty()) text += fmt::format("{}: ", path);
    text += message;
    diags_.add(severity, w, std::move(text));
  }

  void pick_proxy_config(Snapshot& snapshot) {
    if (docs_.proxies.empty()) {
      SourceLocation w{docs_.sources.empty() ? std::string() : docs_.sources.front(), 0, 0};
      diags_.add(Severity::kError, w,
                 fmt::format("no ProxyConfig found: exactly one document with apiVersion: {} and "
                             "kind: ProxyConfig is required",
                             kProxyApiVersion));
      return;
    }
    const auto& first = docs_.proxies.front();
    snapshot.proxy = first.config;
    for (size_t i = 1; i < docs_.proxies.size(); ++i) {
      const auto& extra = docs_.proxies[i];
      error(extra.meta.where, extra.meta, "",
            fmt::format("only one ProxyConfig is allowed; the first one is at {}",
                        loc(first.meta.where)));
    }
  }

  void index_pools(Snapshot& snapshot) {
    for (const ParsedPool& p : docs_.pools) {
      std::string key = p.meta.key();
      auto [it, inserted] = pools_.emplace(key, &p);
      if (!inserted) {
        error(p.meta.where, p.meta, "",
              fmt::format("InferencePool {} is already defined at {}{}", key,
                          loc(it->second->meta.where),
                          it->second->meta.api_version != p.meta.api_version
                              ? fmt::format(" (as {})", it->second->meta.api_version)
                              : std::string()));
        continue;
      }
      snapshot.pools.push_back(p.pool);
    }
  }

  // Every spec.scheduler.pools[] entry must name a defined pool (the first ProxyConfig's; a
  // second one is an error already).
  void check_scheduler_pools() {
    if (docs_.proxies.empty()) return;
    const ParsedProxyConfig& proxy = docs_.proxies.front();
    for (const SchedulerPoolRef& ref : proxy.scheduler_pools) {
      if (pools_.count(ref.key)) continue;
      const std::string ns = ref.key.substr(0, ref.key.find('/'));
      const std::string name = ref.key.substr(ns.size() + 1);
      std::string message = fmt::format("InferencePool {} not found", ref.key);
      std::vector<std::string> same_ns, elsewhere;
      for (const auto& [key, pool] : pools_) {
        if (pool->meta.namespace_ == ns) same_ns.push_back(pool->meta.name);
        if (pool->meta.name == name) elsewhere.push_back(key);
      }
      std::vector<std::string_view> candidates(same_ns.begin(), same_ns.end());
      if (auto hint = closest_match(name, candidates))
        message += fmt::format(" (did you mean \"{}\"?)",
                               ns == "default" && ref.name.find('/') == std::string::npos
                                   ? std::string(*hint)
                                   : fmt::format("{}/{}", ns, *hint));
      else if (!elsewhere.empty() && ref.name.find('/') == std::string::npos)
        message += fmt::format(
            " (InferencePool {} exists; a bare name means namespace \"default\": write \"{}\")",
            elsewhere.front(), elsewhere.front());
      else if (!elsewhere.empty())
        message += fmt::format(" (did you mean \"{}\"?)", elsewhere.front());
      else if (!pools_.empty()) {
        std::vector<std::string> keys;
        for (const auto& [key, pool] : pools_) keys.push_back(key);
        message += fmt::format(" (pools: {})", fmt::join(keys, ", "));
      }
      error(ref.where, proxy.meta, ref.path, message);
    }
  }

  // Two documents with the same kind, namespace and name: the later one replaces the earlier,
  // as `kubectl apply` of both would. Warned, since it is rarely intended.
  template <typename T>
  std::set<std::pair<std::string, size_t>> drop_duplicates(std::vector<T>& items) {
    std::map<std::pair<std::string, std::string>, size_t> last;  // (kind, key) -> index
    for (size_t i = 0; i < items.size(); ++i) last[{items[i].meta.kind, items[i].meta.key()}] = i;
    std::vector<T> kept;
    std::set<std::pair<std::string, size_t>> survivors;  // (key, order)
    for (size_t i = 0; i < items.size(); ++i) {
      size_t winner = last[{items[i].meta.kind, items[i].meta.key()}];
      if (winner != i) {
        const auto& later = items[winner].meta;
        warning(later.where, later, "",
                fmt::format("defined again (first at {}); this later definition replaces it, as "
                            "kubectl apply would",
                            loc(items[i].meta.where)));
        continue;
      }
      survivors.emplace(items[i].meta.key(), items[i].meta.order);
      kept.push_back(std::move(items[i]));
    }
    items = std::move(kept);
    return survivors;
  }

  void drop_redefinitions() {
    auto objectives = drop_duplicates(docs_.objectives);
    // Routes of transitional objectives follow their objective.
    std::erase_if(docs_.models, [&](const ParsedModel& m) {
      return m.meta.kind == "InferenceObjective" && !objectives.count({m.meta.key(), m.meta.order});
    });
    std::vector<ParsedModel> objective_routes, model_docs;
    for (auto& m : docs_.models)
      (m.meta.kind == "InferenceObjective" ? objective_routes : model_docs).push_back(std::move(m));
    drop_duplicates(model_docs);
    docs_.models = std::move(model_docs);
    for (auto& m : objective_routes) docs_.models.push_back(std::move(m));
    drop_duplicates(docs_.rewrites);
  }

  // The pool a poolRef names, in the referring document's namespace; an error when missing
  // (unless `report` is false: the same reference is checked elsewhere).
  const ParsedPool* find_pool(const DocMeta& meta, const PoolRef& ref, bool report = true) {
    auto it = pools_.find(meta.namespace_ + "/" + ref.name);
    if (it == pools_.end() && !report) return nullptr;
    if (it == pools_.end()) {
      std::string message = fmt::format("InferencePool {}/{} not found", meta.namespace_, ref.name);
      std::vector<std::string> same_ns, elsewhere;
      for (const auto& [key, pool] : pools_) {
        if (pool->meta.namespace_ == meta.namespace_) same_ns.push_back(pool->meta.name);
        if (pool->meta.name == ref.name) elsewhere.push_back(key);
      }
      std::vector<std::string_view> candidates(same_ns.begin(), same_ns.end());
      if (auto hint = closest_match(ref.name, candidates))
        message += fmt::format(" (did you mean \"{}\"?)", *hint);
      else if (!elsewhere.empty())
        message += fmt::format(
            " (InferencePool {} exists, but a poolRef names a pool in its own "
            "namespace \"{}\")",
            elsewhere.front(), meta.namespace_);
      else if (!same_ns.empty())
        message +=
            fmt::format(" (pools in namespace {}: {})", meta.namespace_, fmt::join(same_ns, ", "));
      error(ref.name_where, meta, "spec.poolRef.name", message);
      return nullptr;
    }
    const ParsedPool* pool = it->second;
    if (report && ref.group_explicit && ref.group != pool->group)
      warning(ref.where, meta, "spec.poolRef.group",
              fmt::format("is {} but InferencePool {} is a {} pool; using it", ref.group,
                          pool->meta.key(), pool->meta.api_version));
    return pool;
  }

  // One claim on a (pool, model name): from an InferenceModel / transitional objective
  // (rank 0) or an InferenceModelRewrite match (rank 1, after all rank-0 claims: SPEC §3.1).
  struct Claim {
    int rank = 0;
    const DocMeta* meta = nullptr;
    size_t sequence = 0;  // position inside its document (rule, match)
    std::string path;
    ModelRoute route;
  };

  void resolve_models(Snapshot& snapshot) {
    std::vector<Claim> claims;
    for (const ParsedModel& m : docs_.models) {
      // A transitional objective's reference is checked with the objective.
      const ParsedPool* pool = find_pool(m.meta, m.pool_ref, m.meta.kind != "InferenceObjective");
      if (pool == nullptr || !m.complete) continue;
      Claim c;
      c.rank = 0;
      c.meta = &m.meta;
      c.path = m.model_name_path;
      c.route.model_name = m.model_name;
      c.route.pool = pool->meta.key();
      c.route.targets = m.targets;
      c.route.criticality = m.criticality;
      c.route.priority = m.priority;
      c.route.source_kind = m.meta.kind;
      c.route.source_name = m.meta.key();
      c.route.where = m.model_name_where;
      claims.push_back(std::move(c));
    }
    for (const ParsedRewrite& r : docs_.rewrites) {
      const ParsedPool* pool = find_pool(r.meta, r.pool_ref);
      if (pool == nullptr || !r.complete) continue;
      size_t sequence = 0;
      for (const auto& rule : r.rules) {
        auto make = [&](std::string model, std::string path, SourceLocation where) {
          Claim c;
          c.rank = 1;
          c.meta = &r.meta;
          c.sequence = sequence++;
          c.path = std::move(path);
          c.route.model_name = std::move(model);
          c.route.pool = pool->meta.key();
          c.route.targets = rule.targets;
          c.route.source_kind = r.meta.kind;
          c.route.source_name = r.meta.key();
          c.route.where = std::move(where);
          return c;
        };
        if (rule.matches.empty()) {
          Claim c = make("", rule.path, rule.where);
          c.route.catch_all = true;
          claims.push_back(std::move(c));
        }
        for (const auto& match : rule.matches)
          claims.push_back(make(match.model, match.path, match.where));
      }
    }

    // Group by (pool, model); the first after sorting wins.
    std::map<std::pair<std::string, std::string>, std::vector<Claim*>> groups;
    for (Claim& c : claims) {
      std::string model = c.route.catch_all ? std::string("\0*", 2) : c.route.model_name;
      groups[{c.route.pool, model}].push_back(&c);
    }
    std::vector<const Claim*> winners;
    for (auto& [key, group] : groups) {
      std::stable_sort(group.begin(), group.end(), [](const Claim* a, const Claim* b) {
        if (a->rank != b->rank) return a->rank < b->rank;
        if (a->meta != b->meta) return older(*a->meta, *b->meta);
        return a->sequence < b->sequence;
      });
      const Claim* winner = group.front();
      winners.push_back(winner);
      for (size_t i = 1; i < group.size(); ++i) report_shadowed(*group[i], *winner);
    }
    std::sort(winners.begin(), winners.end(), [](const Claim* a, const Claim* b) {
      if (a->meta->order != b->meta->order) return a->meta->order < b->meta->order;
      return a->sequence < b->sequence;
    });
    for (const Claim* c : winners) snapshot.models.push_back(c->route);
  }

  void report_shadowed(const Claim& loser, const Claim& winner) {
    std::string what =
        loser.route.catch_all
            ? fmt::format("a catch-all rule for pool {}", loser.route.pool)
            : fmt::format("model \"{}\" in pool {}", loser.route.model_name, loser.route.pool);
    std::string message;
    if (winner.meta == loser.meta) {
      message = fmt::format("{} is already matched at {}; this one is ignored", what,
                            loc(winner.route.where));
    } else {
      std::string why;
      if (winner.rank < loser.rank)
        why =
            fmt::format("an {} takes precedence over an InferenceModelRewrite", winner.meta->kind);
      else if (winner.meta->created && loser.meta->created)
        why = "it was created earlier (oldest wins)";
      else if (winner.meta->created)
        why = "it has a creationTimestamp and this one has none (oldest wins)";
      else
        why = "it comes first in the configuration (oldest wins)";
      message = fmt::format("{} is already claimed by {} {} at {}: {}; this one is ignored", what,
                            winner.meta->kind, winner.meta->key(), loc(winner.route.where), why);
    }
    warning(loser.route.where, *loser.meta, loser.path, message);
  }

  void resolve_objectives(Snapshot& snapshot) {
    for (const ParsedObjective& o : docs_.objectives) {
      const ParsedPool* pool = find_pool(o.meta, o.pool_ref);
      if (pool == nullptr || !o.complete) continue;
      InferenceObjective out;
      out.name = o.meta.name;
      out.namespace_ = o.meta.namespace_;
      out.priority = o.priority;
      out.pool = pool->meta.key();
      out.where = o.meta.where;
      snapshot.objectives.push_back(std::move(out));
    }
  }

  static bool selects(const std::map<std::string, std::string>& selector,
                      const std::map<std::string, std::string>& labels) {
    return std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
      auto it = labels.find(kv.first);
      return it != labels.end() && it->second == kv.second;
    });
  }

  void resolve_endpoints(Snapshot& snapshot) {
    const ProxyConfig& proxy = snapshot.proxy;
    const DocMeta& proxy_meta = docs_.proxies.front().meta;
    if (snapshot.pools.empty()) {
      warning(proxy_meta.where, proxy_meta, "",
              "no InferencePool is defined: every model request will get 404");
      return;
    }
    std::vector<bool> used(proxy.endpoints.size(), false);
    for (const InferencePool& pool : snapshot.pools) {
      const std::string key = Snapshot::pool_key(pool.namespace_, pool.name);
      size_t before = snapshot.endpoints.size();
      for (size_t i = 0; i < proxy.endpoints.size(); ++i) {
        const StaticEndpointConfig& ep = proxy.endpoints[i];
        if (!selects(pool.selector, ep.labels)) continue;
        used[i] = true;
        std::vector<uint16_t> ports = ep.port ? std::vector<uint16_t>{*ep.port} : pool.target_ports;
        for (uint16_t port : ports) {
          Endpoint out;
          out.name = ep.name;
          if (!ep.port && pool.target_ports.size() > 1) out.name += fmt::format(":{}", port);
          out.pool = key;
          out.host = ep.host;
          out.port = port;
          out.labels = ep.labels;
          out.key = fmt::format("{}|{}|{}", key, ep.name, join_host_port(ep.host, port));
          snapshot.endpoints.push_back(std::move(out));
        }
      }
      if (snapshot.endpoints.size() == before) {
        const ParsedPool& parsed = *pools_.at(key);
        warning(pool.where, parsed.meta, "",
                fmt::format("selects no endpoint: no entry of spec.endpoints in ProxyConfig has "
                            "the labels {}",
                            join_labels(pool.selector)));
      }
    }
    for (size_t i = 0; i < proxy.endpoints.size(); ++i) {
      if (used[i]) continue;
      const StaticEndpointConfig& ep = proxy.endpoints[i];
      warning(ep.where, proxy_meta, "spec.endpoints",
              fmt::format("endpoint \"{}\" (labels {}) is selected by no InferencePool", ep.name,
                          join_labels(ep.labels)));
    }
  }

  Documents& docs_;
  Diagnostics& diags_;
  std::map<std::string, const ParsedPool*> pools_;  // by "namespace/name"
};

}  // namespace

SnapshotPtr resolve(Documents docs, Diagnostics& diags) {
  return Resolver(docs, diags).run();
}

}  // namespace infergate::config::detail
