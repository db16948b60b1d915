#include "discovery/pod_set.h"

#include <fmt/format.h>

#include <algorithm>

#include "config/values.h"

namespace infergate::discovery {

bool same_endpoint_lists(const std::vector<config::Endpoint>& a,
                         const std::vector<config::Endpoint>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.key == y.key && x.name == y.name && x.pool == y.pool && x.host == y.host &&
           x.port == y.port && x.labels == y.labels;
  });
}

PodSet::PodSet(PoolTarget target) : target_(std::move(target)) {}

bool PodSet::same_endpoints(const PodInfo& a, const PodInfo& b) {
  if (a.serving() != b.serving()) return false;
  if (!a.serving()) return true;  // neither serves: no endpoints either way
  return a.pod_ip == b.pod_ip && a.labels == b.labels;
}

bool PodSet::reset(const PodList& list) {
  std::vector<config::Endpoint> before = endpoints();
  pods_.clear();
  for (const PodInfo& p : list.pods) pods_[p.name] = p;
  resource_version_ = list.resource_version;
  synced_ = true;
  return !same_endpoint_lists(before, endpoints());
}

WatchAction PodSet::apply(const WatchEvent& ev, bool& changed) {
  changed = false;
  switch (ev.type) {
    case WatchEventType::kAdded:
    case WatchEventType::kModified: {
      auto [it, inserted] = pods_.try_emplace(ev.pod.name, ev.pod);
      if (inserted) {
        changed = ev.pod.serving();
      } else {
        changed = !same_endpoints(it->second, ev.pod);
        it->second = ev.pod;
      }
      break;
    }
    case WatchEventType::kDeleted: {
      if (auto it = pods_.find(ev.pod.name); it != pods_.end()) {
        changed = it->second.serving();
        pods_.erase(it);
      }
      break;
    }
    case WatchEventType::kBookmark:
      break;
    case WatchEventType::kError:
      if (ev.error_code == 410) {
        resource_version_.clear();
        return WatchAction::kRelist;
      }
      return WatchAction::kReconnect;
  }
  if (!ev.pod.resource_version.empty()) resource_version_ = ev.pod.resource_version;
  return WatchAction::kContinue;
}

WatchAction PodSet::on_watch_status(int http_status) {
  if (http_status == 410) {
    resource_version_.clear();
    return WatchAction::kRelist;
  }
  return http_status == 200 ? WatchAction::kContinue : WatchAction::kReconnect;
}

size_t PodSet::serving_count() const {
  return static_cast<size_t>(std::count_if(pods_.begin(), pods_.end(),
                                           [](const auto& kv) { return kv.second.serving(); }));
}

std::vector<config::Endpoint> PodSet::endpoints() const {
  std::vector<config::Endpoint> out;
  for (const auto& [name, pod] : pods_) {
    if (!pod.serving()) continue;
    for (uint16_t port : target_.target_ports) {
      config::Endpoint e;
      e.name = target_.target_ports.size() > 1 ? fmt::format("{}:{}", name, port) : name;
      e.pool = target_.pool_key;
      e.host = pod.pod_ip;
      e.port = port;
      e.labels = pod.labels;
      e.key =
          fmt::format("{}|{}|{}", target_.pool_key, name, config::join_host_port(pod.pod_ip, port));
      out.push_back(std::move(e));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return out;
}

}  // namespace infergate::discovery
