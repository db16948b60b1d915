#include "proxy/gateway.h"

#include <sys/socket.h>

#include <fmt/format.h>

#include <thread>

#include "common/log.h"
#include "config/loader.h"
#include "proxy/admin_server.h"
#include "proxy/asio.h"
#include "proxy/scraper.h"
#include "proxy/worker.h"

namespace infergate::proxy {
namespace {

using Clock = std::chrono::steady_clock;

std::string format_address(const tcp::endpoint& ep) {
  return ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                              : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

// An acceptor with SO_REUSEPORT so every worker can own one on the same port; the kernel
// spreads new connections across them.
bool open_acceptor(asio::io_context& io, const tcp::endpoint& ep, tcp::acceptor* out,
                   std::string* error) {
  tcp::acceptor acceptor(io);
  error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) {
    int one = 1;
    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      ec = error_code(errno, boost::system::system_category());
  }
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = fmt::format("cannot listen on {}: {}", format_address(ep), ec.message());
    return false;
  }
  *out = std::move(acceptor);
  return true;
}

void publish_pool_gauges(GatewayContext& ctx, const RuntimeState& state) {
  for (const auto& pool : state.pools) {
    ctx.metrics.pool_ready_pods()
        .Add({{"name", pool.key}})
        .Set(static_cast<double>(pool.endpoints.size()));
  }
}

}  // namespace

Gateway::Gateway(config::SnapshotPtr snapshot, std::vector<std::string> config_paths)
    : initial_(std::move(snapshot)), config_paths_(std::move(config_paths)) {}

Gateway::~Gateway() = default;

bool Gateway::reload() {
  auto result = config::load(config_paths_);
  for (const auto& d : result.diagnostics) {
    if (d.severity == config::Severity::kError)
      log::error("{}", d.format());
    else if (d.severity == config::Severity::kWarning)
      log::warn("{}", d.format());
  }
  if (!result.ok()) {
    context_.metrics.config_reloads().Add({{"result", "failure"}}).Increment();
    log::error("configuration reload failed; keeping the running configuration");
    return false;
  }
  auto state = builder_.build(result.snapshot);
  publish_pool_gauges(context_, *state);
  context_.state.store(std::move(state));
  context_.metrics.config_reloads().Add({{"result", "success"}}).Increment();
  log::info("configuration reloaded");
  return true;
}

int Gateway::run() {
  // Install signal handling first: a SIGTERM that arrives while we start up must drain, not
  // kill the process (Asio queues signals that arrive before the first async_wait).
  asio::io_context control;
  asio::signal_set signals(control, SIGINT, SIGTERM, SIGHUP);
  const auto& proxy = initial_->proxy;
  auto state = builder_.build(initial_);
  publish_pool_gauges(context_, *state);
  context_.state.store(state);
  context_.metrics.config_reloads().Add({{"result", "success"}}).Increment();

  unsigned n_workers = proxy.workers;
  if (n_workers == 0) n_workers = std::max(1u, std::thread::hardware_concurrency());

  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n_workers; ++i) workers.push_back(std::make_unique<Worker>(context_, i));

  for (const auto& listener : proxy.listeners) {
    if (listener.tls) {
      log::error("listener {}: TLS listeners are not supported yet", listener.address);
      return 1;
    }
  }

  // Listeners: bind on worker 0 first so port 0 resolves to one real port shared by all.
  for (const auto& listener : proxy.listeners) {
    error_code ec;
    const auto addr = asio::ip::make_address(listener.host, ec);
    if (ec) {
      log::error("listener {}: invalid address: {}", listener.address, ec.message());
      return 2;
    }
    tcp::endpoint ep(addr, listener.port);
    std::string error;
    for (unsigned i = 0; i < n_workers; ++i) {
      tcp::acceptor acceptor(workers[i]->io());
      if (!open_acceptor(workers[i]->io(), ep, &acceptor, &error)) {
        log::error("{}", error);
        return 2;
      }
      if (i == 0) ep = acceptor.local_endpoint();
      workers[i]->add_acceptor(std::move(acceptor), listener.tls.has_value());
    }
    log::write(log::Level::kInfo, "listener ready",
               {{"address", format_address(ep)}, {"protocol", "http"}});
  }

  AdminServer admin(control, context_, listeners_up_);
  if (proxy.admin.enabled) {
    std::string bound, error;
    if (!admin.listen(proxy.admin.host, proxy.admin.port, &bound, &error)) {
      log::error("{}", error);
      return 2;
    }
    admin.start();
    log::write(log::Level::kInfo, "admin ready", {{"address", bound}});
  }

  Scraper scraper(context_);
  scraper.start();
  for (auto& w : workers) w->start();
  listeners_up_ = true;
  log::info("infergate serving with {} worker(s), {} pool(s), {} endpoint(s), {} model route(s)",
            n_workers, initial_->pools.size(), initial_->endpoints.size(), initial_->models.size());

  // SIGHUP reloads; the first SIGTERM/SIGINT drains, a second one stops at once.
  bool draining = false;
  Clock::time_point drain_deadline{};
  asio::steady_timer drain_timer(control);
  std::function<void()> poll_drain;
  std::function<void(const error_code&, int)> on_signal;
  auto finish = [&] {
    admin.stop();
    for (auto& w : workers) w->stop();
    control.stop();
  };
  poll_drain = [&] {
    int64_t active = 0;
    for (auto& w : workers) active += w->active_connections();
    if (active == 0 || Clock::now() >= drain_deadline) {
      if (active != 0)
        log::warn("drain timeout: closing {} connection(s)", active);
      else
        log::info("drained; exiting");
      finish();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](const error_code& ec) {
      if (!ec) poll_drain();
    });
  };
  on_signal = [&](const error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      log::info("SIGHUP: reloading configuration");
      reload();
    } else if (!draining) {
      draining = true;
      const auto timeout = context_.state.load()->config->proxy.limits.drain_timeout;
      log::info("signal {}: draining (timeout {} ms)", signo, timeout.count());
      context_.draining = true;
      for (auto& w : workers) w->begin_drain();
      drain_deadline = Clock::now() + timeout;
      poll_drain();
    } else {
      log::warn("second signal {}: stopping now", signo);
      finish();
      return;
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  control.run();

  for (auto& w : workers) w->join();
  scraper.stop();
  return 0;
}

}  // namespace infergate::proxy
