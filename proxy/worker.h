#pragma once
// One worker thread: its own io_context, its own accept sockets (SO_REUSEPORT), its own
// upstream pools. A downstream connection lives on one worker for its whole life, so nothing
// below is locked; only GatewayContext is shared.

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "metrics/gateway_metrics.h"
#include "proxy/asio.h"
#include "proxy/block_pool.h"
#include "proxy/close_check.h"
#include "proxy/gateway_context.h"
#include "proxy/tls_context.h"
#include "proxy/upstream_pool.h"
#include "routing/flow_queue.h"
#include "routing/rng.h"

namespace infergate::proxy {

// How a wait in the flow-control queue ended.
enum class FlowOutcome { kAdmitted, kExpired, kFull, kCancelled };

class Worker {
 public:
  Worker(GatewayContext& context, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Start-up (before start()): accept connections on `acceptor` (already bound/listening).
  // `tls` set: a TLS listener (ALPN h2 / http/1.1); else plain, HTTP/1.1 or h2c prior knowledge.
  void add_acceptor(tcp::acceptor acceptor, std::shared_ptr<TlsContextHolder> tls);
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
  // Blocks for the HTTP/1.1 exchanges' header arenas and the client connections' read buffers.
  BlockPool& header_blocks() { return header_blocks_; }
  UpstreamPool& upstream(uint64_t endpoint_id) { return upstreams_[endpoint_id]; }
  // After a reload or a discovery change: closes the idle upstream connections of endpoints
  // `state` no longer has. Cheap when the generation was already seen.
  void sync_upstreams(const RuntimeState& state);
  // False for an endpoint removed by the newest state this worker saw: its connection must
  // not go back to an idle pool (it would never be reused nor closed).
  bool endpoint_live(uint64_t endpoint_id) const {
    return upstream_generation_ == 0 || live_endpoints_.count(endpoint_id) != 0;
  }
  std::string new_request_id();

  // Flow control (issue 4 §3): waits in this worker's queue for `pool_key` until the pool has
  // capacity (kAdmitted), the TTL passes (kExpired), the queue has no room or a higher priority
  // pushed this request out (kFull), or the caller is cancelled (kCancelled: the client went
  // away; the entry is removed). Queues are per worker: strict priority order holds among the
  // requests of one worker, and no lock is taken.
  awaitable<FlowOutcome> wait_for_capacity(const std::string& pool_key,
                                           const config::FlowControlConfig& cfg, int priority,
                                           uint64_t bytes);

  // Live downstream connections, so a drain can wake the idle ones. An entry outlives its
  // connection's coroutine (it is removed by a handler posted when the coroutine completes).
  struct SessionEntry {
    beast::tcp_stream* stream = nullptr;  // null before the stream exists and after it is gone
    bool idle = true;                     // waiting for the next request
    // Set by sessions that drain themselves (HTTP/2: GOAWAY, open streams finish).
    std::function<void()> on_drain;
    // Bound to the connection's coroutine: emitting it cancels the operation the connection is
    // waiting on (the HTTP/1.1 client watcher uses it when the client goes away mid-request).
    asio::cancellation_signal cancel;
  };
  using SessionHandle = std::list<SessionEntry>::iterator;
  SessionHandle register_session();
  void unregister_session(SessionHandle h);
  // Connections whose peer may have closed unseen (proxy/close_check.h): each linked check is
  // called once within kCloseCheckInterval.
  CloseCheckList& close_checks() { return close_checks_; }
  static constexpr std::chrono::milliseconds kCloseCheckInterval{100};

 private:
  static awaitable<void> accept_loop(Worker* self, tcp::acceptor* acceptor,
                                     std::shared_ptr<TlsContextHolder> tls);
  // Detects the protocol (TLS: ALPN; plain: the HTTP/2 connection preface) and serves it.
  static awaitable<void> serve_connection(Worker* self, tcp::socket socket,
                                          std::shared_ptr<TlsContextHolder> tls,
                                          SessionEntry* entry);
  static awaitable<void> flow_dispatch_loop(Worker* self);
  static awaitable<void> close_check_loop(Worker* self);
  static void start_close_checks(void* self);
  // Wakes the waiters a pool can take now; expires the old ones.
  void dispatch_flow(const std::string& pool_key);

  struct FlowWaiter {
    asio::steady_timer* wake = nullptr;  // cancelled to wake the waiting request
    FlowOutcome* outcome = nullptr;
  };
  using FlowQueue = routing::FlowQueue<FlowWaiter>;

  GatewayContext& context_;
  unsigned index_;
  // Before everything that holds connections (destroyed after them).
  CloseCheckList close_checks_{&Worker::start_close_checks, this};
  std::thread thread_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<std::shared_ptr<TlsContextHolder>> acceptor_tls_;
  routing::Rng rng_;
  metrics::MetricsCache metrics_cache_;
  BlockPool header_blocks_;
  std::unordered_map<uint64_t, UpstreamPool> upstreams_;
  uint64_t upstream_generation_ = 0;
  std::unordered_set<uint64_t> live_endpoints_;
  std::unordered_map<std::string, std::unique_ptr<FlowQueue>> flow_queues_;  // by pool key
  bool flow_dispatcher_running_ = false;
  bool close_checker_running_ = false;
  std::list<SessionEntry> sessions_;
  std::atomic<int64_t> active_connections_{0};
  // Only this worker's thread performs I/O on its sockets and timers, so the reactor's per-
  // descriptor locking is off; posts from other threads (drain, stop) still lock the scheduler.
  // Declared last, so destroyed first: coroutine frames still suspended in it at exit (a drain
  // timeout) are destroyed while the members they use (sessions_, header_blocks_,
  // metrics_cache_) are alive. Objects holding sockets (acceptors_, upstreams_) are cleared
  // before, in ~Worker.
  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
};

}  // namespace infergate::proxy
