#include "proxy/admin_server.h"

#include <fmt/format.h>

#include "common/log.h"
#include "proxy/errors.h"
#include "proxy/runtime_state.h"
#include "proxy/scraper.h"

namespace infergate::proxy {
namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  append_json_escaped(out, s);
  out += '"';
  return out;
}

std::string labels_json(const std::map<std::string, std::string>& labels) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += quoted(k) + ":" + quoted(v);
  }
  return out + "}";
}

const char* criticality_name(config::Criticality c) {
  switch (c) {
    case config::Criticality::kCritical:
      return "Critical";
    case config::Criticality::kStandard:
      return "Standard";
    case config::Criticality::kSheddable:
      return "Sheddable";
  }
  return "Standard";
}

// The effective scheduler configuration: per pool, routing's resolved values (profile
// defaults with the configured overrides applied), so what is shown is what runs.
std::string scheduler_json(const config::Snapshot& s) {
  const auto& sc = s.proxy.scheduler;
  std::string out = fmt::format(
      "{{\"profile\":{},\"prefixIndexBytes\":{},\"debugHeader\":{},\"retryAfterSeconds\":{},"
      "\"flowControl\":{{\"enabled\":{},\"maxRequests\":{},\"maxBytes\":{},\"ttlMs\":{}}},"
      "\"pools\":{{",
      quoted(sc.defaults.profile.value_or("default")), sc.prefix_index_bytes, sc.debug_header,
      sc.retry_after_seconds, sc.flow_control.enabled, sc.flow_control.max_requests,
      sc.flow_control.max_bytes, sc.flow_control.ttl.count());
  for (size_t i = 0; i < s.pools.size(); ++i) {
    const auto key = config::Snapshot::pool_key(s.pools[i].namespace_, s.pools[i].name);
    const auto c = scheduler_config_for(sc, key, s.proxy.model_server_metrics.stale_after);
    const auto& w = c.weights;
    out += (i ? "," : "") +
           fmt::format(
               "{}:{{\"profile\":{},\"weights\":{{\"queue\":{},\"kvCache\":{},"
               "\"prefixCache\":{},\"loraAffinity\":{},\"inFlight\":{}}},"
               "\"saturation\":{{\"queueDepthThreshold\":{},\"kvCacheThreshold\":{},"
               "\"metricsStalenessMs\":{},\"headroom\":{}}}}}",
               quoted(key), quoted(routing::profile_name(c.profile)), w.queue, w.kv_cache, w.prefix,
               w.lora, w.in_flight, c.saturation.queue_depth_threshold,
               c.saturation.kv_cache_threshold,
               std::chrono::duration_cast<std::chrono::milliseconds>(c.saturation.metrics_staleness)
                   .count(),
               c.saturation.headroom);
  }
  return out + "}}";
}

}  // namespace

AdminServer::AdminServer(asio::io_context& io, GatewayContext& context,
                         const std::atomic<bool>& listeners_up)
    : io_(io), context_(context), listeners_up_(listeners_up), acceptor_(io) {}

bool AdminServer::listen(const std::string& host, uint16_t port, std::string* bound,
                         std::string* error) {
  error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    *error = fmt::format("admin address {}: {}", host, ec.message());
    return false;
  }
  const tcp::endpoint ep(addr, port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = fmt::format("admin listener {}:{}: {}", host, port, ec.message());
    return false;
  }
  const auto local = acceptor_.local_endpoint(ec);
  *bound = addr.is_v6() ? fmt::format("[{}]:{}", host, local.port())
                        : fmt::format("{}:{}", host, local.port());
  return true;
}

void AdminServer::start() {
  asio::co_spawn(io_, accept_loop(this), asio::detached);
}

void AdminServer::stop() {
  error_code ignored;
  acceptor_.close(ignored);
}

awaitable<void> AdminServer::accept_loop(AdminServer* self) {
  for (;;) {
    auto [ec, socket] = co_await self->acceptor_.async_accept(kNoThrow);
    if (ec) {
      if (!self->acceptor_.is_open()) co_return;
      continue;
    }
    asio::co_spawn(self->io_, serve(self, std::move(socket)), asio::detached);
  }
}

awaitable<void> AdminServer::serve(AdminServer* self, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (ec) break;
    auto res = self->handle(parser.get());
    res.keep_alive(parser.get().keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, kNoThrow);
    if (wec || !res.keep_alive()) break;
  }
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

http::response<http::string_body> AdminServer::handle(const http::request<http::string_body>& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  auto target = req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  auto json = [&](int status, std::string body) {
    res.result(static_cast<http::status>(status));
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
  };
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    json(405, error_body({405,
                          "invalid_request_error",
                          "method_not_allowed",
                          "the admin endpoints only answer GET",
                          {}}));
    res.set(http::field::allow, "GET");
    return res;
  }
  const auto state = context_.state.load();
  if (target == "/healthz") {
    res.set(http::field::content_type, "text/plain");
    res.body() = "ok\n";
  } else if (target == "/readyz") {
    res.set(http::field::content_type, "text/plain");
    if (context_.draining.load()) {
      res.result(http::status::service_unavailable);
      res.body() = "draining\n";
    } else if (!state || !listeners_up_.load()) {
      res.result(http::status::service_unavailable);
      res.body() = "not ready\n";
    } else {
      res.body() = "ready\n";
    }
  } else if (target == "/metrics") {
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = context_.metrics.serialize();
  } else if (target == "/debug/endpoints") {
    const auto samples = context_.engine_metrics.load();
    json(200, endpoints_json(*state, samples.get()));
  } else if (target == "/debug/config") {
    json(200, config_json(*state->config));
  } else {
    json(404, error_body({404,
                          "invalid_request_error",
                          "not_found",
                          fmt::format("unknown admin path {}", target),
                          {}}));
  }
  return res;
}

std::string AdminServer::endpoints_json(const RuntimeState& state, const MetricsSnapshot* samples) {
  const auto now = std::chrono::steady_clock::now();
  const bool aligned = samples != nullptr && samples->generation == state.generation;
  std::string out = "{\"endpoints\":[";
  bool first = true;
  for (size_t p = 0; p < state.pools.size(); ++p) {
    const auto& pool = state.pools[p];
    for (size_t i = 0; i < pool.endpoints.size(); ++i) {
      const auto& ep = pool.endpoints[i];
      if (!first) out += ',';
      first = false;
      const auto& e = ep->endpoint;
      const EndpointSample* s =
          aligned && i < samples->pools[p].size() ? samples->pools[p][i].get() : nullptr;
      out += fmt::format(
          "{{\"name\":{},\"address\":{},\"pool\":{},\"ready\":{},\"labels\":{},"
          "\"in_flight\":{},\"requests_total\":{},\"failures_total\":{},"
          "\"dispatched_since_scrape\":{},\"metrics\":",
          quoted(e.name), quoted(fmt::format("{}:{}", e.host, e.port)), quoted(pool.key),
          s == nullptr || s->ready(), labels_json(e.labels), ep->in_flight.load(),
          ep->requests_total.load(), ep->failures_total.load(), ep->dispatched_since_scrape.load());
      if (s == nullptr) {
        out += "null}";
        continue;
      }
      const auto& m = s->metrics;
      std::string running, waiting;
      for (size_t j = 0; j < m.running_adapters.size(); ++j)
        running += (j ? "," : "") + quoted(m.running_adapters[j]);
      for (size_t j = 0; j < m.waiting_adapters.size(); ++j)
        waiting += (j ? "," : "") + quoted(m.waiting_adapters[j]);
      const double age = s->scraped_at == std::chrono::steady_clock::time_point{}
                             ? -1.0
                             : std::chrono::duration<double>(now - s->scraped_at).count();
      out += fmt::format(
          "{{\"ok\":{},\"error\":{},\"consecutive_failures\":{},\"age_seconds\":{:.3f},"
          "\"waiting\":{},\"running\":{},\"kv_cache_usage\":{},\"running_lora_adapters\":[{}],"
          "\"waiting_lora_adapters\":[{}],\"max_lora\":{},\"block_size\":{},"
          "\"num_gpu_blocks\":{}}}}}",
          s->ok, s->ok ? "null" : quoted(s->error), s->failures, age, m.waiting, m.running,
          m.kv_cache_usage, running, waiting, m.max_lora, m.block_size, m.num_gpu_blocks);
    }
  }
  return out + "]}";
}

std::string AdminServer::config_json(const config::Snapshot& s) {
  const auto& p = s.proxy;
  std::string out = "{\"sources\":[";
  for (size_t i = 0; i < s.sources.size(); ++i) out += (i ? "," : "") + quoted(s.sources[i]);
  out += fmt::format("],\"proxy\":{{\"name\":{},\"workers\":{},\"listeners\":[", quoted(p.name),
                     p.workers);
  for (size_t i = 0; i < p.listeners.size(); ++i) {
    const auto& l = p.listeners[i];
    out += (i ? "," : "") +
           fmt::format("{{\"address\":{},\"tls\":{}}}", quoted(l.address),
                       l.tls ? fmt::format("{{\"certFile\":{},\"keyFile\":\"<redacted>\"}}",
                                           quoted(l.tls->cert_file))
                             : std::string("null"));
  }
  const auto& lim = p.limits;
  out += fmt::format(
      "],\"admin\":{{\"address\":{},\"enabled\":{}}},\"scheduler\":{},"
      "\"limits\":{{\"maxRequestBodyBytes\":{},\"maxRequestHeaderBytes\":{},"
      "\"maxResponseBodyBytes\":{},\"headerTimeoutMs\":{},\"bodyTimeoutMs\":{},"
      "\"idleTimeoutMs\":{},\"upstreamConnectTimeoutMs\":{},\"upstreamResponseTimeoutMs\":{},"
      "\"upstreamIdleTimeoutMs\":{},\"drainTimeoutMs\":{},\"maxRetries\":{},"
      "\"upstreamMaxIdlePerEndpoint\":{}}},\"endpoints\":[",
      quoted(p.admin.address), p.admin.enabled, scheduler_json(s), lim.max_request_body_bytes,
      lim.max_request_header_bytes, lim.max_response_body_bytes, lim.header_timeout.count(),
      lim.body_timeout.count(), lim.idle_timeout.count(), lim.upstream_connect_timeout.count(),
      lim.upstream_response_timeout.count(), lim.upstream_idle_timeout.count(),
      lim.drain_timeout.count(), lim.max_retries, lim.upstream_max_idle_per_endpoint);
  for (size_t i = 0; i < p.endpoints.size(); ++i) {
    const auto& e = p.endpoints[i];
    out += (i ? "," : "") + fmt::format("{{\"name\":{},\"address\":{},\"labels\":{}}}",
                                        quoted(e.name), quoted(e.address), labels_json(e.labels));
  }
  out += "]},\"pools\":[";
  for (size_t i = 0; i < s.pools.size(); ++i) {
    const auto& pool = s.pools[i];
    std::string ports;
    for (size_t j = 0; j < pool.target_ports.size(); ++j)
      ports += (j ? "," : "") + std::to_string(pool.target_ports[j]);
    out +=
        (i ? "," : "") +
        fmt::format(
            "{{\"name\":{},\"namespace\":{},\"apiVersion\":{},\"selector\":{},"
            "\"targetPorts\":[{}],\"appProtocol\":{},\"failureMode\":{}}}",
            quoted(pool.name), quoted(pool.namespace_), quoted(pool.api_version),
            labels_json(pool.selector), ports,
            quoted(pool.app_protocol == config::AppProtocol::kH2c ? "kubernetes.io/h2c" : "http"),
            quoted(pool.failure_mode == config::FailureMode::kFailOpen ? "FailOpen" : "FailClose"));
  }
  out += "],\"models\":[";
  for (size_t i = 0; i < s.models.size(); ++i) {
    const auto& m = s.models[i];
    std::string targets;
    for (size_t j = 0; j < m.targets.size(); ++j)
      targets += (j ? "," : "") + fmt::format("{{\"name\":{},\"weight\":{}}}",
                                              quoted(m.targets[j].model), m.targets[j].weight);
    out +=
        (i ? "," : "") + fmt::format(
                             "{{\"modelName\":{},\"pool\":{},\"targets\":[{}],\"criticality\":{},"
                             "\"source\":{}}}",
                             quoted(m.model_name), quoted(m.pool), targets,
                             m.criticality ? quoted(criticality_name(*m.criticality)) : "null",
                             quoted(m.source_kind + "/" + m.source_name));
  }
  out += "],\"objectives\":[";
  for (size_t i = 0; i < s.objectives.size(); ++i) {
    const auto& o = s.objectives[i];
    out += (i ? "," : "") +
           fmt::format("{{\"name\":{},\"namespace\":{},\"priority\":{},\"pool\":{}}}",
                       quoted(o.name), quoted(o.namespace_), o.priority, quoted(o.pool));
  }
  return out + "]}";
}

}  // namespace infergate::proxy
