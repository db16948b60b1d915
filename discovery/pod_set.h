#pragma once
// The sans-I/O core of pod discovery: the pods one selector matches, kept in step with LIST
// results and watch events, the resourceVersion to resume from, and what the I/O loop must do
// next (continue, relist after 410 Gone, reconnect). Turns the serving pods into endpoints
// (pod IP x the pool's target ports). Not thread-safe: owned by one PodWatcher.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "discovery/watch_events.h"

namespace infergate::discovery {

// Which endpoints a pool's pods become.
struct PoolTarget {
  std::string pool_key;                // namespace/name of the InferencePool
  std::vector<uint16_t> target_ports;  // each serving pod gives one endpoint per port
};

enum class WatchAction {
  kContinue,   // keep reading the stream
  kRelist,     // the resourceVersion is too old (410 Gone): LIST again, then watch from it
  kReconnect,  // the watch ended in an error: watch again from the kept resourceVersion
};

// Equal keys, names, hosts, ports and labels, in order.
bool same_endpoint_lists(const std::vector<config::Endpoint>& a,
                         const std::vector<config::Endpoint>& b);

class PodSet {
 public:
  explicit PodSet(PoolTarget target);

  // Replaces the whole set with a LIST result (pods missing from it are gone) and resumes
  // from its resourceVersion. Returns whether the endpoint list changed.
  bool reset(const PodList& list);

  // One watch event. ADDED/MODIFIED upsert, DELETED removes, BOOKMARK only advances the
  // resourceVersion, ERROR code 410 forgets it (kRelist), any other ERROR is kReconnect.
  // `changed` is set to whether the endpoint list changed.
  WatchAction apply(const WatchEvent& ev, bool& changed);

  // A watch request answered with a status other than 200.
  WatchAction on_watch_status(int http_status);

  // The resourceVersion to watch from; "" means LIST first.
  const std::string& resource_version() const { return resource_version_; }
  bool synced() const { return synced_; }  // a LIST succeeded at least once

  // The serving pods' endpoints, sorted by key. Endpoint: key "pool|pod|ip:port", name the pod
  // name (":port" appended when the pool has several target ports), host the pod IP, labels
  // the pod's labels.
  std::vector<config::Endpoint> endpoints() const;
  size_t pod_count() const { return pods_.size(); }
  size_t serving_count() const;

 private:
  // Whether two versions of a pod give the same endpoints.
  static bool same_endpoints(const PodInfo& a, const PodInfo& b);

  PoolTarget target_;
  std::map<std::string, PodInfo> pods_;  // by name: one namespace per watcher
  std::string resource_version_;
  bool synced_ = false;
};

}  // namespace infergate::discovery
