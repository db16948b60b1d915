#pragma once
// PodWatcher: keeps the endpoints of one InferencePool in step with the Kubernetes API. It
// LISTs the pods of one namespace matching the pool's selector, then WATCHes from the list's
// resourceVersion (allowWatchBookmarks, timeoutSeconds), over HTTP/1.1 (TLS for real clusters;
// plain HTTP for stand-ins and `kubectl proxy`). A watch that ends is resumed from the last
// resourceVersion seen (events and bookmarks); 410 Gone (HTTP status or an ERROR event) means
// that version is no longer in the server's history, so it LISTs again. Failures reconnect with
// exponential backoff and jitter. The list/watch rules live in PodSet (sans-I/O); this class
// is the I/O around it.
//
// Threads: all work runs on a strand of the io_context given to create(); the io_context may
// be run by one thread or several. start() and stop() may be called from any thread.
// Ownership: create() returns a shared_ptr; the running operations hold a reference, so the
// object lives until stop() has taken effect and the io_context has run the cancellations (or
// the io_context is destroyed).

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "discovery/backoff.h"
#include "discovery/kube_config.h"
#include "discovery/pod_set.h"
#include "discovery/watch_events.h"

namespace infergate::discovery {

struct PodWatcherOptions {
  std::string namespace_;                       // the InferencePool's namespace
  std::map<std::string, std::string> selector;  // the pool's matchLabels (AND of equalities)
  PoolTarget target;                            // pool key and target ports
  // Bursts of changes (a rollout) within this window give one callback.
  std::chrono::milliseconds debounce{100};
  // timeoutSeconds of each watch request: the server ends the watch after it and we resume
  // from the last resourceVersion. A read idle for this plus 30 s counts as a dropped watch.
  std::chrono::seconds watch_timeout{290};
  std::chrono::milliseconds connect_timeout{5'000};   // resolve + connect + TLS handshake
  std::chrono::milliseconds request_timeout{30'000};  // a LIST, headers of a watch
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30'000};
  uint64_t max_list_bytes = 64ull << 20;  // a PodList body beyond this is an error
  uint64_t max_event_bytes = 4ull << 20;  // one watch event line beyond this is an error
};

// "k1=v1,k2=v2" (sorted by key), as the labelSelector query parameter wants it (unescaped).
std::string label_selector(const std::map<std::string, std::string>& selector);
// The LIST and WATCH request targets (escaped).
std::string list_target(const KubeConfig& kube, const PodWatcherOptions& opts);
std::string watch_target(const KubeConfig& kube, const PodWatcherOptions& opts,
                         const std::string& resource_version);

class PodWatcher : public std::enable_shared_from_this<PodWatcher> {
 public:
  // Receives the full list of serving endpoints (sorted by key) after the first successful
  // LIST (even when empty) and then whenever the list changes (debounced). Runs on the
  // watcher's strand, never concurrently with itself and never after stop() took effect; it
  // must not block (hand the list over to whoever owns the configuration and return).
  using Callback = std::function<void(std::vector<config::Endpoint>)>;

  // Builds the TLS context (throws KubeConfigError on unusable PEM). Does not start.
  static std::shared_ptr<PodWatcher> create(boost::asio::io_context& io, KubeConfig kube,
                                            PodWatcherOptions opts, Callback callback);

  void start();
  // Cancels the connection and timers; no callback runs after it took effect.
  void stop();

  // Counters for logs and tests (relaxed; read from any thread).
  struct Counters {
    std::atomic<uint64_t> lists{0};
    std::atomic<uint64_t> watches{0};
    std::atomic<uint64_t> relists_410{0};
    std::atomic<uint64_t> reconnects{0};
    std::atomic<uint64_t> events{0};
    std::atomic<uint64_t> bookmarks{0};
  };
  const Counters& counters() const { return counters_; }

  ~PodWatcher();

 private:
  struct Private;  // the coroutines (pod_watcher.cpp)
  friend struct Private;

  PodWatcher(boost::asio::io_context& io, KubeConfig kube, PodWatcherOptions opts,
             Callback callback);

  void note_change();
  void publish();

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  KubeConfig kube_;
  PodWatcherOptions opts_;
  Callback callback_;
  std::optional<boost::asio::ssl::context> ssl_;
  PodSet set_;
  WatchParser parser_;
  std::mt19937_64 rng_;
  Backoff backoff_;
  boost::asio::steady_timer debounce_timer_;
  bool debounce_armed_ = false;
  bool published_ = false;
  std::vector<config::Endpoint> last_published_;
  bool stopped_ = false;
  int relists_without_progress_ = 0;
  std::function<void()> cancel_;  // cancels the running coroutine (strand only)
  Counters counters_;
};

}  // namespace infergate::discovery
