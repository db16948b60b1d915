#pragma once
// Wires the process together: workers and their listeners, the admin server, signals (SIGHUP
// reload, SIGTERM/SIGINT drain), and the published runtime state.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/gateway_context.h"
#include "proxy/runtime_state.h"

namespace infergate::proxy {

class DnsDiscovery;

class Gateway {
 public:
  Gateway(config::SnapshotPtr snapshot, std::vector<std::string> config_paths);
  ~Gateway();

  // Binds, serves until SIGTERM/SIGINT and a drain, then returns the process exit code:
  // 0 clean stop, 2 runtime failure (e.g. a port in use).
  int run();

 private:
  bool reload();   // SIGHUP / file change: validate, then swap; an invalid config keeps the old
  void publish();  // builds and publishes a RuntimeState from current_ and the discovery results
  void sync_kubernetes();  // one pod watcher per pool when spec.discovery.kubernetes is on

  config::SnapshotPtr initial_;
  config::SnapshotPtr current_;                          // control thread only
  std::map<std::string, std::vector<std::string>> dns_;  // control thread only
  // Kubernetes discovery, control thread only: pool key -> its watcher and latest endpoints.
  struct KubeWatch;
  std::map<std::string, std::unique_ptr<KubeWatch>> kube_watches_;
  std::map<std::string, std::vector<config::Endpoint>> kube_endpoints_;
  void* control_io_ = nullptr;  // the control io_context while run() runs
  std::vector<std::string> config_paths_;
  GatewayContext context_;
  StateBuilder builder_;
  DnsDiscovery* dns_discovery_ = nullptr;  // lives in run()
  std::atomic<bool> listeners_up_{false};
};

}  // namespace infergate::proxy
