#include "proxy/worker.h"

#include <algorithm>
#include <array>
#include <boost/beast/ssl.hpp>
#include <utility>

#include "common/log.h"
#include "proxy/http1_session.h"
#include "proxy/http2_session.h"
#include "proxy/scraper.h"

namespace infergate::proxy {
namespace {

void log_coroutine_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error("connection task failed: {}", ex.what());
  }
}

}  // namespace

Worker::Worker(GatewayContext& context, unsigned index)
    : context_(context),
      index_(index),
      rng_(0x5EEDull * (index + 1) ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())),
      metrics_cache_(context.metrics) {}

Worker::~Worker() {
  if (thread_.joinable()) {
    io_.stop();
    thread_.join();
  }
  // Connections cut short by stop() (drain timeout) are coroutine frames still suspended in io_.
  // Cancel them, close their sockets and let them unwind now, while everything is alive.
  error_code ignored;
  for (auto& a : acceptors_) a->close(ignored);
  for (auto& s : sessions_) {
    s.cancel.emit(asio::cancellation_type::terminal);
    if (s.stream) s.stream->socket().close(ignored);
  }
  for (auto& [id, pool] : upstreams_) pool.h2.clear();  // upstream h2c sessions end too
  io_.restart();
  io_.run_for(std::chrono::seconds(2));
  // Sockets go before io_ (destroyed first of the members, with any frame still in it).
  acceptors_.clear();
  upstreams_.clear();
}

void Worker::add_acceptor(tcp::acceptor acceptor, std::shared_ptr<TlsContextHolder> tls) {
  acceptors_.push_back(std::make_unique<tcp::acceptor>(std::move(acceptor)));
  acceptor_tls_.push_back(tls);
}

void Worker::start() {
  for (size_t i = 0; i < acceptors_.size(); ++i) {
    asio::co_spawn(io_, accept_loop(this, acceptors_[i].get(), acceptor_tls_[i]),
                   log_coroutine_exception);
  }
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);  // keep running between connections
    io_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::stop() {
  io_.stop();
}

void Worker::begin_drain() {
  asio::post(io_, [this] {
    for (auto& a : acceptors_) {
      error_code ignored;
      a->close(ignored);
    }
    for (auto& s : sessions_) {
      if (s.on_drain)
        s.on_drain();  // HTTP/2: GOAWAY; the open streams finish
      else if (s.idle && s.stream)
        s.stream->cancel();  // wakes its header read; the session sees draining
    }
  });
}

awaitable<void> Worker::accept_loop(Worker* self, tcp::acceptor* acceptor,
                                    std::shared_ptr<TlsContextHolder> tls) {
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      // EMFILE and friends: back off briefly instead of spinning.
      log::warn("accept failed: {}", ec.message());
      asio::steady_timer t(self->io_, std::chrono::milliseconds(50));
      co_await t.async_wait(kNoThrow);
      continue;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    // The entry's signal is the connection coroutine's cancellation slot. The entry goes once
    // the coroutine has fully unwound: the completion handler runs inside its last step, so the
    // removal is posted.
    const SessionHandle h = self->register_session();
    asio::co_spawn(self->io_, serve_connection(self, std::move(socket), tls, &*h),
                   asio::bind_cancellation_slot(h->cancel.slot(), [self, h](std::exception_ptr e) {
                     log_coroutine_exception(e);
                     asio::post(self->io_, [self, h] { self->unregister_session(h); });
                   }));
  }
}

namespace {

// Points the connection's entry at its stream while the stream exists (for the drain).
class SessionRegistration {
 public:
  SessionRegistration(Worker::SessionEntry* e, beast::tcp_stream* s) : e_(e) { e_->stream = s; }
  SessionRegistration(const SessionRegistration&) = delete;
  SessionRegistration& operator=(const SessionRegistration&) = delete;
  ~SessionRegistration() {
    e_->stream = nullptr;
    e_->on_drain = nullptr;
  }
  Worker::SessionEntry& entry() { return *e_; }

 private:
  Worker::SessionEntry* e_;
};

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace

awaitable<void> Worker::serve_connection(Worker* self, tcp::socket socket,
                                         std::shared_ptr<TlsContextHolder> tls,
                                         SessionEntry* entry) {
  co_await asio::this_coro::throw_if_cancelled(false);
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  std::string client_address = ec ? std::string("unknown") : peer.address().to_string();
  const auto limits = self->context_.state.load()->config->proxy.limits;

  if (tls) {
    // Hold the context for the connection's life: a SIGHUP may replace the listener's.
    const TlsContextPtr ctx = tls->get();
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ctx);
    SessionRegistration registration(entry, &beast::get_lowest_layer(stream));
    beast::get_lowest_layer(stream).expires_after(limits.header_timeout);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kNoThrow);
    if (hec) {
      log::debug("TLS handshake with {} failed: {}", client_address, hec.message());
      error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
      co_return;
    }
    if (negotiated_alpn(stream.native_handle()) == "h2") {
      co_await run_http2_session(self, stream, registration.entry(), {}, client_address, true);
    } else {
      co_await run_http1_session(self, stream, registration.entry(),
                                 ClientBuffer(&self->header_blocks()), client_address, true);
    }
    co_return;
  }

  // Plain: HTTP/2 with prior knowledge starts with the connection preface; anything else is
  // HTTP/1.1. Read until the bytes leave the preface or the whole preface is there. The bytes
  // are read into the buffer the HTTP/1.1 session goes on with.
  beast::tcp_stream stream(std::move(socket));
  SessionRegistration registration(entry, &stream);
  ClientBuffer buffer(&self->header_blocks());
  bool h2 = false;
  for (;;) {
    stream.expires_after(buffer.size() == 0 ? limits.idle_timeout : limits.header_timeout);
    auto [rec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
    if (rec) {
      error_code ignored;
      stream.socket().close(ignored);
      co_return;  // closed, timed out, or woken by a drain before a request
    }
    buffer.commit(n);
    const std::string_view initial(static_cast<const char*>(buffer.data().data()), buffer.size());
    const size_t k = std::min(initial.size(), kH2Preface.size());
    if (initial.substr(0, k) != kH2Preface.substr(0, k)) break;
    if (initial.size() >= kH2Preface.size()) {
      h2 = true;
      break;
    }
  }
  stream.expires_never();
  if (h2) {
    std::string initial(static_cast<const char*>(buffer.data().data()), buffer.size());
    buffer.clear();
    buffer.shrink_to_fit();
    co_await run_http2_session(self, stream, registration.entry(), std::move(initial),
                               client_address, false);
  } else {
    co_await run_http1_session(self, stream, registration.entry(), std::move(buffer),
                               client_address, false);
  }
}

awaitable<FlowOutcome> Worker::wait_for_capacity(const std::string& pool_key,
                                                 const config::FlowControlConfig& cfg, int priority,
                                                 uint64_t bytes) {
  auto& slot = flow_queues_[pool_key];
  if (!slot) {
    FlowQueue::Limits limits;
    limits.max_requests = cfg.max_requests;
    limits.max_bytes = cfg.max_bytes;
    limits.ttl = cfg.ttl;
    slot = std::make_unique<FlowQueue>(limits);
  }
  FlowQueue& queue = *slot;
  asio::steady_timer wake(io_, std::chrono::steady_clock::time_point::max());
  FlowOutcome outcome = FlowOutcome::kCancelled;
  auto pushed =
      queue.push(FlowWaiter{&wake, &outcome}, priority, bytes, std::chrono::steady_clock::now());
  for (auto& displaced : pushed.displaced) {
    *displaced.value.outcome = FlowOutcome::kFull;
    displaced.value.wake->cancel();
  }
  if (pushed.status != FlowQueue::Status::kQueued) co_return FlowOutcome::kFull;
  if (!flow_dispatcher_running_) {
    flow_dispatcher_running_ = true;
    asio::co_spawn(io_, flow_dispatch_loop(this), asio::detached);
  }
  co_await wake.async_wait(kNoThrow);
  // Woken by the dispatcher (outcome set), or cancelled with the request (outcome unchanged):
  // then the entry is still queued and must go.
  if (outcome == FlowOutcome::kCancelled) queue.remove(pushed.handle);
  co_return outcome;
}

awaitable<void> Worker::flow_dispatch_loop(Worker* self) {
  // Runs while any queue holds a request; checks every few milliseconds (capacity frees as
  // requests finish and as scrapes land, every modelServerMetrics.interval).
  asio::steady_timer tick(self->io_);
  for (;;) {
    bool any = false;
    for (auto& [key, queue] : self->flow_queues_) {
      if (queue->empty()) continue;
      self->dispatch_flow(key);
      any = any || !queue->empty();
    }
    if (!any) break;
    tick.expires_after(std::chrono::milliseconds(5));
    co_await tick.async_wait(kNoThrow);
  }
  self->flow_dispatcher_running_ = false;
}

void Worker::dispatch_flow(const std::string& pool_key) {
  FlowQueue& queue = *flow_queues_[pool_key];
  const auto now = std::chrono::steady_clock::now();
  queue.expire(now, [](FlowQueue::Entry&& e) {
    *e.value.outcome = FlowOutcome::kExpired;
    e.value.wake->cancel();
  });
  if (queue.empty()) return;
  const RuntimeStatePtr state = context_.state.load();
  const PoolRuntime* pool = state->find_pool(pool_key);
  if (pool == nullptr || pool->endpoints.empty()) {
    // The pool is gone (reload) or empty: nothing will free up; let the TTL answer them.
    return;
  }
  // Capacity, GIE-style: the mean over fresh endpoints of max(waiting/Q, kv/KV) < 1, with the
  // requests already sent since the last scrape (and those admitted in this pass) counted as
  // waiting, so a pass does not release more than the pool can queue.
  const auto samples = context_.engine_metrics.load(std::memory_order_acquire);
  const size_t pool_index = static_cast<size_t>(pool - state->pools.data());
  const bool aligned = samples && samples->generation == state->generation &&
                       pool_index < samples->pools.size() &&
                       samples->pools[pool_index].size() == pool->endpoints.size();
  if (!aligned) return;
  const auto& sat = pool->scheduler->config().saturation;
  const size_t n = pool->endpoints.size();
  double admitted = 0;
  while (!queue.empty()) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      const auto* s = samples->pools[pool_index][i].get();
      if (s == nullptr || !s->ok || now - s->scraped_at > sat.metrics_staleness) {
        sum += 1.0;
        continue;
      }
      // Sent since the scrape and still unanswered (as the scheduler counts them).
      const auto& ep = *pool->endpoints[i];
      const int64_t pending = std::min(ep.dispatched_since_scrape.load(std::memory_order_relaxed),
                                       ep.in_flight.load(std::memory_order_relaxed));
      const double waiting = s->metrics.waiting +
                             static_cast<double>(std::max<int64_t>(0, pending)) +
                             admitted / static_cast<double>(n);
      sum += std::max(waiting / sat.queue_depth_threshold,
                      s->metrics.kv_cache_usage / sat.kv_cache_threshold);
    }
    if (sum / static_cast<double>(n) >= 1.0) break;
    auto entry = queue.pop();
    if (!entry) break;
    *entry->value.outcome = FlowOutcome::kAdmitted;
    entry->value.wake->cancel();
    admitted += 1;
  }
}

void Worker::sync_upstreams(const RuntimeState& state) {
  if (state.generation <= upstream_generation_) return;
  upstream_generation_ = state.generation;
  live_endpoints_.clear();
  for (const auto& pool : state.pools)
    for (const auto& ep : pool.endpoints) live_endpoints_.insert(ep->id);
  for (auto it = upstreams_.begin(); it != upstreams_.end();) {
    if (live_endpoints_.count(it->first)) {
      ++it;
    } else {
      it = upstreams_.erase(it);  // closes its idle connections
    }
  }
}

std::string Worker::new_request_id() {
  const uint64_t a = rng_.next(), b = rng_.next();
  // UUID v4 layout: 8-4-4-4-12 hex digits, version digit 4, variant digit 8-b. Written by
  // hand: one per request, and fmt::format costs several times as much.
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string id(36, '-');
  const auto put = [&id](size_t at, uint64_t v, size_t digits) {
    for (size_t i = digits; i-- > 0; v >>= 4) id[at + i] = kHex[v & 0xf];
  };
  put(0, a >> 32, 8);
  put(9, (a >> 16) & 0xffff, 4);
  id[14] = '4';
  put(15, a & 0xfff, 3);
  put(19, ((b >> 48) & 0x3fff) | 0x8000, 4);
  put(24, b & 0xffffffffffffull, 12);
  return id;
}

Worker::SessionHandle Worker::register_session() {
  active_connections_.fetch_add(1);
  context_.metrics.connections_accepted().Increment();
  context_.metrics.connections_active().Increment();
  sessions_.emplace_back();
  return std::prev(sessions_.end());
}

void Worker::start_close_checks(void* self) {
  auto* w = static_cast<Worker*>(self);
  if (w->close_checker_running_) return;
  w->close_checker_running_ = true;
  asio::co_spawn(w->io_, close_check_loop(w), asio::detached);
}

awaitable<void> Worker::close_check_loop(Worker* self) {
  // Runs while checks are asked for.
  asio::steady_timer tick(self->io_);
  for (;;) {
    tick.expires_after(kCloseCheckInterval);
    co_await tick.async_wait(kNoThrow);
    if (self->close_checks_.run() == 0 && self->close_checks_.empty()) break;
  }
  self->close_checker_running_ = false;
}

void Worker::unregister_session(SessionHandle h) {
  sessions_.erase(h);
  context_.metrics.connections_active().Decrement();
  active_connections_.fetch_sub(1);
}

}  // namespace infergate::proxy
