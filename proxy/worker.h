#pragma once
// One worker thread: its own io_context, its own accept sockets (SO_REUSEPORT), its own
// upstream pools. A downstream connection lives on one worker for its whole life, so nothing
// below is locked; only GatewayContext is shared.

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "metrics/gateway_metrics.h"
#include "proxy/asio.h"
#include "proxy/gateway_context.h"
#include "proxy/upstream_pool.h"
#include "routing/picker.h"
#include "routing/rng.h"

namespace infergate::proxy {

class Worker {
 public:
  Worker(GatewayContext& context, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Start-up (before start()): accept connections on `acceptor` (already bound/listening).
  void add_acceptor(tcp::acceptor acceptor, bool tls);
  void start();  // runs the io_context on a new thread
  void join();
  // Thread-safe: posted to the worker. Stops accepting, then closes idle keep-alive
  // connections now and busy ones after their current response.
  void begin_drain();
  void stop();  // thread-safe: stops the io_context (after drain, or on timeout)
  int64_t active_connections() const { return active_connections_.load(); }

  // ---- worker thread only ----
  GatewayContext& context() { return context_; }
  asio::io_context& io() { return io_; }
  routing::Rng& rng() { return rng_; }
  metrics::MetricsCache& metrics() { return metrics_cache_; }
  UpstreamPool& upstream(uint64_t endpoint_id) { return upstreams_[endpoint_id]; }
  routing::Picker& picker(const RuntimeState& state);
  std::string new_request_id();

  // Live downstream connections, so a drain can wake the idle ones.
  struct SessionEntry {
    beast::tcp_stream* stream = nullptr;
    bool idle = true;  // waiting for the next request
  };
  using SessionHandle = std::list<SessionEntry>::iterator;
  SessionHandle register_session(beast::tcp_stream* stream);
  void unregister_session(SessionHandle h);

 private:
  static awaitable<void> accept_loop(Worker* self, tcp::acceptor* acceptor, bool tls);

  GatewayContext& context_;
  unsigned index_;
  asio::io_context io_{1};
  std::thread thread_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<bool> acceptor_tls_;
  routing::Rng rng_;
  metrics::MetricsCache metrics_cache_;
  std::unordered_map<uint64_t, UpstreamPool> upstreams_;
  uint64_t picker_generation_ = 0;
  std::unique_ptr<routing::Picker> picker_;
  std::list<SessionEntry> sessions_;
  std::atomic<int64_t> active_connections_{0};
};

}  // namespace infergate::proxy
