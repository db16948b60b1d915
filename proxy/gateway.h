#pragma once
// Wires the process together: workers and their listeners, the admin server, signals (SIGHUP
// reload, SIGTERM/SIGINT drain), and the published runtime state.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/gateway_context.h"
#include "proxy/runtime_state.h"

namespace infergate::proxy {

class Gateway {
 public:
  Gateway(config::SnapshotPtr snapshot, std::vector<std::string> config_paths);
  ~Gateway();

  // Binds, serves until SIGTERM/SIGINT and a drain, then returns the process exit code:
  // 0 clean stop, 2 runtime failure (e.g. a port in use).
  int run();

 private:
  bool reload();  // SIGHUP: validate, then swap; an invalid config keeps the running one

  config::SnapshotPtr initial_;
  std::vector<std::string> config_paths_;
  GatewayContext context_;
  StateBuilder builder_;
  std::atomic<bool> listeners_up_{false};
};

}  // namespace infergate::proxy
