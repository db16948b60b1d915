#pragma once
// Watches the configuration files with inotify (issue 7 §1) and calls back, debounced, when one
// changes. It watches the *directories* (of each file, or each directory given), so editors that
// write a new file and rename it over the old one, and Kubernetes ConfigMap volumes that swap a
// `..data` symlink, are seen too. Runs on the control thread's io_context.

#include <functional>
#include <string>
#include <vector>

#include "proxy/asio.h"

namespace infergate::proxy {

class ConfigWatcher {
 public:
  ConfigWatcher(asio::io_context& io, std::vector<std::string> paths,
                std::function<void()> on_change);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // False (and a logged reason) when inotify is unavailable; SIGHUP still reloads.
  bool start();
  void stop();

 private:
  struct Watch {
    int wd = -1;
    std::string dir;
    std::vector<std::string> files;  // basenames of interest; empty: every *.yaml / *.yml
  };
  static awaitable<void> read_loop(ConfigWatcher* self);
  bool relevant(int wd, const std::string& name) const;

  asio::io_context& io_;
  std::vector<std::string> paths_;
  std::function<void()> on_change_;
  asio::posix::stream_descriptor fd_;
  asio::steady_timer debounce_;
  std::vector<Watch> watches_;
  bool pending_ = false;
};

}  // namespace infergate::proxy
