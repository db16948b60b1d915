#include "proxy/gateway.h"

#include <sys/socket.h>

#include <fmt/format.h>

#include <set>
#include <thread>

#include "common/log.h"
#include "config/loader.h"
#include "discovery/pod_watcher.h"
#include "proxy/admin_server.h"
#include "proxy/asio.h"
#include "proxy/config_watcher.h"
#include "proxy/dns_discovery.h"
#include "proxy/scraper.h"
#include "proxy/tls_context.h"
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

struct Gateway::KubeWatch {
  std::string namespace_;
  std::map<std::string, std::string> selector;
  std::vector<uint16_t> ports;
  std::shared_ptr<discovery::PodWatcher> watcher;
};

void Gateway::sync_kubernetes() {
  const auto& d = current_->proxy.discovery;
  auto* io = static_cast<asio::io_context*>(control_io_);
  if (!d.kubernetes || io == nullptr) {
    for (auto& [key, w] : kube_watches_) w->watcher->stop();
    kube_watches_.clear();
    kube_endpoints_.clear();
    return;
  }
  discovery::KubeConfig kube;
  try {
    kube = discovery::load_auto(d.kubeconfig);
  } catch (const std::exception& e) {
    log::error("kubernetes discovery: {}", e.what());
    return;
  }
  std::set<std::string> present;
  for (const auto& pool : current_->pools) {
    const auto key = config::Snapshot::pool_key(pool.namespace_, pool.name);
    present.insert(key);
    auto& slot = kube_watches_[key];
    if (slot && slot->namespace_ == pool.namespace_ && slot->selector == pool.selector &&
        slot->ports == pool.target_ports)
      continue;
    if (slot) slot->watcher->stop();
    slot = std::make_unique<KubeWatch>();
    slot->namespace_ = pool.namespace_;
    slot->selector = pool.selector;
    slot->ports = pool.target_ports;
    discovery::PodWatcherOptions opts;
    opts.namespace_ = pool.namespace_;
    opts.selector = pool.selector;
    opts.target = {key, pool.target_ports};
    try {
      // The callback runs on the watcher's strand of the control io_context: the control
      // thread, like every other user of kube_endpoints_.
      slot->watcher = discovery::PodWatcher::create(
          *io, kube, opts, [this, key](std::vector<config::Endpoint> eps) {
            log::info("kubernetes discovery: pool {} has {} endpoint(s)", key, eps.size());
            kube_endpoints_[key] = std::move(eps);
            publish();
          });
    } catch (const std::exception& e) {
      log::error("kubernetes discovery for pool {}: {}", key, e.what());
      kube_watches_.erase(key);
      continue;
    }
    slot->watcher->start();
  }
  for (auto it = kube_watches_.begin(); it != kube_watches_.end();) {
    if (present.count(it->first)) {
      ++it;
      continue;
    }
    it->second->watcher->stop();
    kube_endpoints_.erase(it->first);
    it = kube_watches_.erase(it);
  }
}

void Gateway::publish() {
  auto state = builder_.build(current_, dns_, kube_endpoints_);
  publish_pool_gauges(context_, *state);
  context_.state.store(std::move(state));
}

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
  current_ = result.snapshot;
  sync_kubernetes();
  publish();
  if (dns_discovery_) dns_discovery_->update(*current_);
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
  current_ = initial_;
  publish();
  context_.metrics.config_reloads().Add({{"result", "success"}}).Increment();

  unsigned n_workers = proxy.workers;
  if (n_workers == 0) n_workers = std::max(1u, std::thread::hardware_concurrency());

  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n_workers; ++i) workers.push_back(std::make_unique<Worker>(context_, i));

  // TLS contexts, one per TLS listener, shared by its acceptors on every worker; SIGHUP
  // reloads the files (main checked them already, so a failure here is a race with an edit).
  std::vector<std::shared_ptr<TlsContextHolder>> tls_contexts(proxy.listeners.size());
  for (size_t i = 0; i < proxy.listeners.size(); ++i) {
    const auto& listener = proxy.listeners[i];
    if (!listener.tls) continue;
    std::string error;
    auto ctx = make_server_tls_context(*listener.tls, &error);
    if (!ctx) {
      log::error("listener {}: {}", listener.address, error);
      return 1;
    }
    tls_contexts[i] = std::make_shared<TlsContextHolder>(std::move(ctx));
  }
  auto reload_tls = [&] {
    const auto& now = context_.state.load()->config->proxy.listeners;
    for (size_t i = 0; i < proxy.listeners.size(); ++i) {
      if (!tls_contexts[i]) continue;
      // The files of the same listener in the new configuration, else the ones it started with.
      const config::TlsConfig* files = &*proxy.listeners[i].tls;
      if (i < now.size() && now[i].address == proxy.listeners[i].address && now[i].tls)
        files = &*now[i].tls;
      std::string error;
      if (auto ctx = make_server_tls_context(*files, &error)) {
        tls_contexts[i]->set(std::move(ctx));
        log::info("listener {}: TLS certificate reloaded", proxy.listeners[i].address);
      } else {
        log::error("listener {}: TLS reload failed, keeping the running certificate: {}",
                   proxy.listeners[i].address, error);
      }
    }
  };

  // Listeners: bind on worker 0 first so port 0 resolves to one real port shared by all.
  for (size_t li = 0; li < proxy.listeners.size(); ++li) {
    const auto& listener = proxy.listeners[li];
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
      workers[i]->add_acceptor(std::move(acceptor), tls_contexts[li]);
    }
    log::write(log::Level::kInfo, "listener ready",
               {{"address", format_address(ep)}, {"protocol", listener.tls ? "https" : "http"}});
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
  // Discovery and config-file watching run on the control thread.
  DnsDiscovery dns(control, [this](const DnsResults& results) {
    dns_ = results;
    publish();
  });
  dns_discovery_ = &dns;
  dns.update(*current_);
  control_io_ = &control;
  sync_kubernetes();
  ConfigWatcher watcher(control, config_paths_, [this] {
    log::info("configuration file changed: reloading");
    reload();
  });
  watcher.start();
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
    dns.stop();
    for (auto& [key, w] : kube_watches_) w->watcher->stop();
    watcher.stop();
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
      reload_tls();
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
  dns_discovery_ = nullptr;
  kube_watches_.clear();
  control_io_ = nullptr;
  return 0;
}

}  // namespace infergate::proxy
