#include "proxy/worker.h"

#include <fmt/format.h>

#include "common/log.h"
#include "proxy/http1_session.h"

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
  // They reference this worker's members (sessions_, upstreams_), which are destroyed before
  // io_: close their sockets and let them unwind now, while everything is alive.
  error_code ignored;
  for (auto& a : acceptors_) a->close(ignored);
  for (auto& s : sessions_) s.stream->socket().close(ignored);
  io_.restart();
  io_.run_for(std::chrono::seconds(2));
}

void Worker::add_acceptor(tcp::acceptor acceptor, bool tls) {
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
      if (s.idle) s.stream->cancel();  // wakes its header read; the session sees draining
    }
  });
}

awaitable<void> Worker::accept_loop(Worker* self, tcp::acceptor* acceptor, bool tls) {
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
    asio::co_spawn(self->io_, run_http1_session(self, std::move(socket), tls),
                   log_coroutine_exception);
  }
}

routing::Picker& Worker::picker(const RuntimeState& state) {
  if (!picker_ || picker_generation_ != state.generation) {
    picker_ = routing::make_picker(state.config->proxy.scheduler.profile);
    if (!picker_) picker_ = routing::make_picker("least-request");
    picker_generation_ = state.generation;
  }
  return *picker_;
}

std::string Worker::new_request_id() {
  const uint64_t a = rng_.next(), b = rng_.next();
  // UUID v4 layout.
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                     ((b >> 48) & 0x3fff) | 0x8000, b & 0xffffffffffffull);
}

Worker::SessionHandle Worker::register_session(beast::tcp_stream* stream) {
  active_connections_.fetch_add(1);
  context_.metrics.connections_accepted().Increment();
  context_.metrics.connections_active().Increment();
  return sessions_.insert(sessions_.end(), SessionEntry{stream, true});
}

void Worker::unregister_session(SessionHandle h) {
  sessions_.erase(h);
  context_.metrics.connections_active().Decrement();
  active_connections_.fetch_sub(1);
}

}  // namespace infergate::proxy
