#include "discovery/pod_watcher.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/log.h"

namespace infergate::discovery {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
inline constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

std::string url_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string host_header(const KubeConfig& k) {
  const std::string h = k.host.find(':') != std::string::npos ? "[" + k.host + "]" : k.host;
  const bool default_port = (k.https && k.port == 443) || (!k.https && k.port == 80);
  return default_port ? h : fmt::format("{}:{}", h, k.port);
}

std::string snippet(std::string_view body) {
  std::string s(body.substr(0, 300));
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

enum class End { kClean, kError };

struct WatchOutcome {
  enum class Result { kEnded, kRelist, kError } result = Result::kError;
  bool keep_alive = false;
  uint64_t events = 0;
};

}  // namespace

std::string label_selector(const std::map<std::string, std::string>& selector) {
  std::string out;
  for (const auto& [k, v] : selector) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

std::string list_target(const KubeConfig& kube, const PodWatcherOptions& opts) {
  std::string t =
      fmt::format("{}/api/v1/namespaces/{}/pods", kube.path_prefix, url_escape(opts.namespace_));
  if (!opts.selector.empty()) t += "?labelSelector=" + url_escape(label_selector(opts.selector));
  return t;
}

std::string watch_target(const KubeConfig& kube, const PodWatcherOptions& opts,
                         const std::string& resource_version) {
  std::string t = list_target(kube, opts);
  t += opts.selector.empty() ? '?' : '&';
  t += fmt::format("watch=1&allowWatchBookmarks=true&timeoutSeconds={}&resourceVersion={}",
                   opts.watch_timeout.count(), url_escape(resource_version));
  return t;
}

// The coroutines. Each holds a shared_ptr to the watcher for its whole life.
struct PodWatcher::Private {
  static http::request<http::empty_body> make_request(PodWatcher& w, const std::string& target) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host_header(w.kube_));
    req.set(http::field::user_agent, "infergate-discovery");
    req.set(http::field::accept, "application/json");
    if (std::string auth = w.kube_.authorization(); !auth.empty())
      req.set(http::field::authorization, auth);
    return req;
  }

  template <typename Stream>
  static void expire(Stream& s, std::chrono::steady_clock::duration d) {
    beast::get_lowest_layer(s).expires_after(d);
  }

  // LIST; on success the set is reset. Returns {ok, keep_alive}.
  template <typename Stream>
  static asio::awaitable<std::pair<bool, bool>> list(std::shared_ptr<PodWatcher> w, Stream& s,
                                                     beast::flat_buffer& buf) {
    const std::string target = list_target(w->kube_, w->opts_);
    auto req = make_request(*w, target);
    expire(s, w->opts_.request_timeout);
    if (auto [ec, n] = co_await http::async_write(s, req, kNoThrow); ec) {
      log::warn("kubernetes: LIST {}: write: {}", target, ec.message());
      co_return std::pair{false, false};
    }
    http::response_parser<http::string_body> p;
    p.body_limit(w->opts_.max_list_bytes);
    if (auto [ec, n] = co_await http::async_read(s, buf, p, kNoThrow); ec) {
      log::warn("kubernetes: LIST {}: read: {}", target, ec.message());
      co_return std::pair{false, false};
    }
    w->counters_.lists.fetch_add(1, std::memory_order_relaxed);
    const auto& res = p.get();
    if (res.result_int() != 200) {
      const char* hint = (res.result_int() == 401 || res.result_int() == 403)
                             ? " (check the ServiceAccount's Role: pods get/list/watch)"
                             : "";
      log::warn("kubernetes: LIST {}: HTTP {}{}: {}", target, res.result_int(), hint,
                snippet(res.body()));
      co_return std::pair{false, false};
    }
    auto parsed = w->parser_.parse_list(res.body());
    if (!parsed.value) {
      log::warn("kubernetes: LIST {}: {}", target, parsed.error);
      co_return std::pair{false, false};
    }
    const bool first = !w->set_.synced();
    const bool changed = w->set_.reset(*parsed.value);
    log::info("kubernetes: listed pool={} pods={} serving={} resourceVersion={}",
              w->opts_.target.pool_key, w->set_.pod_count(), w->set_.serving_count(),
              w->set_.resource_version());
    if (first) {
      w->publish();  // the first sync is reported at once, even when empty
    } else if (changed) {
      w->note_change();
    }
    co_return std::pair{true, res.keep_alive()};
  }

  template <typename Stream>
  static asio::awaitable<WatchOutcome> watch(std::shared_ptr<PodWatcher> w, Stream& s,
                                             beast::flat_buffer& buf) {
    WatchOutcome out;
    const std::string target = watch_target(w->kube_, w->opts_, w->set_.resource_version());
    auto req = make_request(*w, target);
    expire(s, w->opts_.request_timeout);
    if (auto [ec, n] = co_await http::async_write(s, req, kNoThrow); ec) {
      log::warn("kubernetes: WATCH: write: {}", ec.message());
      co_return out;
    }
    http::response_parser<http::buffer_body> p;
    p.body_limit(boost::none);  // a watch is an endless stream; each line is bounded below
    if (auto [ec, n] = co_await http::async_read_header(s, buf, p, kNoThrow); ec) {
      log::warn("kubernetes: WATCH: read header: {}", ec.message());
      co_return out;
    }
    w->counters_.watches.fetch_add(1, std::memory_order_relaxed);
    const int status = p.get().result_int();
    std::string pending;  // bytes of the current, unfinished line
    char chunk[16384];
    const auto idle = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        w->opts_.watch_timeout + std::chrono::seconds(30));
    bool relist = false;
    while (!p.is_done()) {
      p.get().body().data = chunk;
      p.get().body().size = sizeof chunk;
      expire(s, status == 200 ? idle : w->opts_.request_timeout);
      auto [ec, n] = co_await http::async_read_some(s, buf, p, kNoThrow);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return out;
        log::warn("kubernetes: WATCH pool={} dropped after {} events: {}", w->opts_.target.pool_key,
                  out.events, ec.message());
        co_return out;
      }
      const size_t got = sizeof chunk - p.get().body().size;
      pending.append(chunk, got);
      if (status != 200) {
        if (pending.size() > 65536) pending.resize(65536);
        continue;
      }
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(pending.data() + start, nl - start);
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        auto ev = w->parser_.parse_event(line);
        if (!ev.value) {
          log::warn("kubernetes: WATCH pool={}: bad event: {}", w->opts_.target.pool_key, ev.error);
          co_return out;
        }
        ++out.events;
        w->relists_without_progress_ = 0;
        w->backoff_.reset();
        if (ev.value->type == WatchEventType::kBookmark) {
          w->counters_.bookmarks.fetch_add(1, std::memory_order_relaxed);
        } else {
          w->counters_.events.fetch_add(1, std::memory_order_relaxed);
        }
        bool changed = false;
        const WatchAction action = w->set_.apply(*ev.value, changed);
        if (changed) w->note_change();
        if (action == WatchAction::kRelist) {
          log::info("kubernetes: WATCH pool={}: {} ({}): relisting", w->opts_.target.pool_key,
                    ev.value->error_code, ev.value->error_message);
          relist = true;
          break;
        }
        if (action == WatchAction::kReconnect) {
          log::warn("kubernetes: WATCH pool={}: ERROR event {} {}: {}", w->opts_.target.pool_key,
                    ev.value->error_code, ev.value->error_reason, ev.value->error_message);
          co_return out;
        }
      }
      if (relist) break;
      pending.erase(0, start);
      if (pending.size() > w->opts_.max_event_bytes) {
        log::warn("kubernetes: WATCH pool={}: an event exceeds {} bytes", w->opts_.target.pool_key,
                  w->opts_.max_event_bytes);
        co_return out;
      }
    }
    if (relist) {
      // The server ends the stream after an ERROR event; we do not wait for it.
      w->counters_.relists_410.fetch_add(1, std::memory_order_relaxed);
      out.result = WatchOutcome::Result::kRelist;
      co_return out;
    }
    if (status != 200) {
      const int code = w->parser_.status_code(pending);
      const WatchAction action =
          w->set_.on_watch_status(status == 410 || code == 410 ? 410 : status);
      if (action == WatchAction::kRelist) {
        log::info("kubernetes: WATCH pool={}: HTTP 410 Gone: relisting", w->opts_.target.pool_key);
        w->counters_.relists_410.fetch_add(1, std::memory_order_relaxed);
        out.result = WatchOutcome::Result::kRelist;
        out.keep_alive = p.get().keep_alive();
      } else {
        log::warn("kubernetes: WATCH pool={}: HTTP {}: {}", w->opts_.target.pool_key, status,
                  snippet(pending));
      }
      co_return out;
    }
    out.result = WatchOutcome::Result::kEnded;  // timeoutSeconds reached: watch again
    out.keep_alive = p.get().keep_alive();
    co_return out;
  }

  // LIST when needed, then WATCH, again and again on one connection while it stays open.
  template <typename Stream>
  static asio::awaitable<End> serve(std::shared_ptr<PodWatcher> w, Stream& s) {
    beast::flat_buffer buf;
    for (;;) {
      if (w->set_.resource_version().empty()) {
        auto [ok, keep_alive] = co_await list(w, s, buf);
        if (!ok) co_return End::kError;
        if (!keep_alive) co_return End::kClean;
      }
      const auto began = std::chrono::steady_clock::now();
      WatchOutcome o = co_await watch(w, s, buf);
      if (w->stopped_) co_return End::kClean;
      if (o.result == WatchOutcome::Result::kError) co_return End::kError;
      if (o.result == WatchOutcome::Result::kRelist) {
        // A 410 right after a fresh LIST, twice: do not hammer the server.
        if (++w->relists_without_progress_ > 2) co_return End::kError;
      } else if (o.events == 0 &&
                 std::chrono::steady_clock::now() - began < std::chrono::seconds(1)) {
        co_return End::kError;  // a watch that ends at once, with nothing: back off
      }
      if (!o.keep_alive) co_return End::kClean;
    }
  }

  static asio::awaitable<End> connect_and_serve(std::shared_ptr<PodWatcher> w) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(w->kube_.host, std::to_string(w->kube_.port), kNoThrow);
    if (rec) {
      log::warn("kubernetes: resolve {}: {}", w->kube_.host, rec.message());
      co_return End::kError;
    }
    if (!w->kube_.https) {
      beast::tcp_stream s(ex);
      s.expires_after(w->opts_.connect_timeout);
      if (auto [ec, ep] = co_await s.async_connect(endpoints, kNoThrow); ec) {
        log::warn("kubernetes: connect {}: {}", w->kube_.server_url(), ec.message());
        co_return End::kError;
      }
      co_return co_await serve(w, s);
    }
    beast::ssl_stream<beast::tcp_stream> s(ex, *w->ssl_);
    if (!is_ip_literal(w->kube_.host))
      SSL_set_tlsext_host_name(s.native_handle(), w->kube_.host.c_str());
    if (!w->kube_.insecure_skip_tls_verify)
      s.set_verify_callback(ssl::host_name_verification(w->kube_.host));
    beast::get_lowest_layer(s).expires_after(w->opts_.connect_timeout);
    if (auto [ec, ep] = co_await beast::get_lowest_layer(s).async_connect(endpoints, kNoThrow);
        ec) {
      log::warn("kubernetes: connect {}: {}", w->kube_.server_url(), ec.message());
      co_return End::kError;
    }
    if (auto [ec] = co_await s.async_handshake(ssl::stream_base::client, kNoThrow); ec) {
      log::warn("kubernetes: TLS handshake with {}: {}", w->kube_.server_url(), ec.message());
      co_return End::kError;
    }
    co_return co_await serve(w, s);
  }

  static asio::awaitable<void> run(std::shared_ptr<PodWatcher> w) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!w->stopped_) {
      End end = End::kError;
      try {
        end = co_await connect_and_serve(w);
      } catch (const KubeConfigError& e) {  // the token file went away
        log::warn("kubernetes: {}", e.what());
      }
      if (w->stopped_) break;
      w->counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
      if (end == End::kClean) continue;
      const auto delay = w->backoff_.next();
      log::info("kubernetes: pool={} retrying in {} ms (attempt {})", w->opts_.target.pool_key,
                delay.count(), w->backoff_.attempt());
      timer.expires_after(delay);
      co_await timer.async_wait(kNoThrow);
    }
  }
};

PodWatcher::PodWatcher(asio::io_context& io, KubeConfig kube, PodWatcherOptions opts,
                       Callback callback)
    : strand_(asio::make_strand(io)),
      kube_(std::move(kube)),
      opts_(std::move(opts)),
      callback_(std::move(callback)),
      set_(opts_.target),
      rng_(std::random_device{}()),
      backoff_(opts_.backoff_initial, opts_.backoff_max,
               [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }),
      debounce_timer_(strand_) {}

PodWatcher::~PodWatcher() = default;

std::shared_ptr<PodWatcher> PodWatcher::create(asio::io_context& io, KubeConfig kube,
                                               PodWatcherOptions opts, Callback callback) {
  std::shared_ptr<PodWatcher> w(
      new PodWatcher(io, std::move(kube), std::move(opts), std::move(callback)));
  if (w->kube_.https) {
    try {
      w->ssl_.emplace(ssl::context::tls_client);
      w->ssl_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1);
      if (w->kube_.insecure_skip_tls_verify) {
        w->ssl_->set_verify_mode(ssl::verify_none);
      } else {
        w->ssl_->set_verify_mode(ssl::verify_peer);
        if (w->kube_.ca_pem.empty()) {
          w->ssl_->set_default_verify_paths();
        } else {
          w->ssl_->add_certificate_authority(asio::buffer(w->kube_.ca_pem));
        }
      }
      if (!w->kube_.client_cert_pem.empty()) {
        w->ssl_->use_certificate_chain(asio::buffer(w->kube_.client_cert_pem));
        w->ssl_->use_private_key(asio::buffer(w->kube_.client_key_pem), ssl::context::pem);
      }
    } catch (const boost::system::system_error& e) {
      throw KubeConfigError(fmt::format("{}: TLS setup: {}", w->kube_.source, e.what()));
    }
  }
  return w;
}

void PodWatcher::start() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->stopped_ || self->cancel_) return;
    auto signal = std::make_shared<asio::cancellation_signal>();
    self->cancel_ = [signal] { signal->emit(asio::cancellation_type::terminal); };
    log::info("kubernetes: watching pods of pool={} namespace={} selector={} via {} ({})",
              self->opts_.target.pool_key, self->opts_.namespace_,
              label_selector(self->opts_.selector), self->kube_.server_url(), self->kube_.source);
    asio::co_spawn(self->strand_, Private::run(self),
                   asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
  });
}

void PodWatcher::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->debounce_timer_.cancel();
    if (self->cancel_) self->cancel_();
  });
}

void PodWatcher::note_change() {
  if (debounce_armed_ || stopped_) return;
  debounce_armed_ = true;
  debounce_timer_.expires_after(opts_.debounce);
  debounce_timer_.async_wait([self = shared_from_this()](error_code ec) {
    self->debounce_armed_ = false;
    if (ec || self->stopped_) return;
    self->publish();
  });
}

void PodWatcher::publish() {
  if (stopped_) return;
  std::vector<config::Endpoint> eps = set_.endpoints();
  if (published_ && same_endpoint_lists(eps, last_published_)) return;
  published_ = true;
  last_published_ = eps;
  log::info("kubernetes: pool={} endpoints={}", opts_.target.pool_key, eps.size());
  callback_(std::move(eps));
}

}  // namespace infergate::discovery
