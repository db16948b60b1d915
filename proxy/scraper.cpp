#include "proxy/scraper.h"

#include <fmt/format.h>

#include "common/log.h"
#include "metrics/engine_mapping.h"
#include "metrics/prometheus_parser.h"

namespace infergate::proxy {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxMetricsBody = 8ull << 20;  // a vLLM page is ~20 KB; bound garbage

EngineType engine_for(const config::Endpoint& ep, const std::string& default_type) {
  if (auto it = ep.labels.find(std::string(metrics::kEngineTypeLabel)); it != ep.labels.end()) {
    if (auto t = metrics::parse_engine_type(it->second)) return *t;
    // An unknown label value was already reported by nobody: say it once per (re)start.
    log::warn("endpoint {}: unknown {} label value \"{}\", detecting the engine instead", ep.name,
              metrics::kEngineTypeLabel, it->second);
    return EngineType::kAuto;
  }
  return metrics::parse_engine_type(default_type).value_or(EngineType::kAuto);
}

}  // namespace

struct Scraper::Target {
  explicit Target(asio::any_io_executor ex) : timer(ex) {}
  std::shared_ptr<EndpointRuntime> endpoint;
  EngineType engine = EngineType::kAuto;
  bool stopped = false;
  asio::steady_timer timer;                   // the pause between scrapes; cancelled to stop
  std::unique_ptr<beast::tcp_stream> stream;  // current keep-alive connection, if any
  std::shared_ptr<const EndpointSample> latest;
};

Scraper::Scraper(GatewayContext& context) : context_(context) {
  auto& registry = context_.metrics.registry();
  failures_counter_ = &prometheus::BuildCounter()
                           .Name("infergate_scrape_failures_total")
                           .Help("Failed scrapes of model-server metrics endpoints.")
                           .Register(registry)
                           .Add({});
  duration_ =
      &prometheus::BuildHistogram()
           .Name("infergate_scrape_duration_seconds")
           .Help("Duration of one model-server metrics scrape, connect included.")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                            0.025, 0.05, 0.1, 0.25, 0.5, 1});
}

Scraper::~Scraper() {
  stop();
}

void Scraper::start() {
  asio::co_spawn(io_, control_loop(this), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("scraper stopped: {}", ex.what());
    }
  });
  thread_ = std::thread([this] { io_.run(); });
}

void Scraper::stop() {
  if (!thread_.joinable()) return;
  io_.stop();
  thread_.join();
}

awaitable<void> Scraper::control_loop(Scraper* self) {
  asio::steady_timer tick(self->io_);
  for (;;) {
    const RuntimeStatePtr state = self->context_.state.load();
    const auto& cfg = state->config->proxy.model_server_metrics;
    if (cfg.enabled) {
      self->sync_targets(*state);
      self->publish(*state);
    }
    tick.expires_after(cfg.interval);
    co_await tick.async_wait(kNoThrow);
  }
}

void Scraper::sync_targets(const RuntimeState& state) {
  const auto& cfg = state.config->proxy.model_server_metrics;
  std::unordered_map<uint64_t, bool> present;
  for (const auto& pool : state.pools) {
    for (const auto& ep : pool.endpoints) {
      present[ep->id] = true;
      if (targets_.count(ep->id)) continue;
      auto target = std::make_shared<Target>(io_.get_executor());
      target->endpoint = ep;
      target->engine = engine_for(ep->endpoint, cfg.engine_type);
      targets_.emplace(ep->id, target);
      asio::co_spawn(io_, endpoint_loop(this, target), asio::detached);
    }
  }
  for (auto it = targets_.begin(); it != targets_.end();) {
    if (present.count(it->first)) {
      ++it;
      continue;
    }
    // Removed by a reload: stop its loop (it holds its own reference until it returns).
    it->second->stopped = true;
    it->second->timer.cancel();
    if (it->second->stream) it->second->stream->cancel();
    it = targets_.erase(it);
  }
}

void Scraper::publish(const RuntimeState& state) {
  auto snap = std::make_shared<MetricsSnapshot>();
  snap->generation = state.generation;
  snap->pools.resize(state.pools.size());
  const auto now = Clock::now();
  const auto stale_after = state.config->proxy.model_server_metrics.stale_after;
  for (size_t i = 0; i < state.pools.size(); ++i) {
    const auto& pool = state.pools[i];
    double kv = 0, queue = 0;
    int fresh = 0;
    snap->pools[i].reserve(pool.endpoints.size());
    for (const auto& ep : pool.endpoints) {
      auto it = targets_.find(ep->id);
      std::shared_ptr<const EndpointSample> sample =
          it == targets_.end() ? nullptr : it->second->latest;
      if (sample && sample->ok && now - sample->scraped_at <= stale_after) {
        kv += sample->metrics.kv_cache_usage;
        queue += sample->metrics.waiting;
        ++fresh;
      }
      snap->pools[i].push_back(std::move(sample));
    }
    // GIE's pool gauges: averages over the endpoints reporting fresh metrics.
    auto& metrics = context_.metrics;
    metrics.pool_average_kv_cache().Add({{"name", pool.key}}).Set(fresh ? kv / fresh : 0.0);
    metrics.pool_average_queue().Add({{"name", pool.key}}).Set(fresh ? queue / fresh : 0.0);
  }
  context_.engine_metrics.store(std::move(snap), std::memory_order_release);
}

awaitable<void> Scraper::endpoint_loop(Scraper* self, std::shared_ptr<Target> target) {
  const config::Endpoint& ep = target->endpoint->endpoint;
  beast::flat_buffer buffer;
  std::vector<tcp::endpoint> addresses;
  metrics::ParsedMetrics parsed;
  while (!target->stopped) {
    const RuntimeStatePtr state = self->context_.state.load();
    const auto& cfg = state->config->proxy.model_server_metrics;
    const auto started = Clock::now();
    std::string error;
    std::string body;
    bool openmetrics = false;

    if (!target->stream) {
      target->stream = std::make_unique<beast::tcp_stream>(self->io_);
      buffer.clear();
      error_code ec;
      const auto addr = asio::ip::make_address(ep.host, ec);
      addresses.clear();
      if (!ec) {
        addresses.emplace_back(addr, ep.port);
      } else {
        tcp::resolver resolver(self->io_);
        auto [rec, results] =
            co_await resolver.async_resolve(ep.host, std::to_string(ep.port), kNoThrow);
        if (rec) error = fmt::format("resolve {}: {}", ep.host, rec.message());
        for (const auto& r : results) addresses.push_back(r.endpoint());
      }
      if (error.empty()) {
        target->stream->expires_after(cfg.timeout);
        auto [cec, connected] = co_await target->stream->async_connect(addresses, kNoThrow);
        if (cec) error = fmt::format("connect: {}", cec.message());
      }
    }
    if (error.empty()) {
      http::request<http::empty_body> req{http::verb::get, cfg.path, 11};
      req.set(http::field::host, fmt::format("{}:{}", ep.host, ep.port));
      req.set(http::field::accept, "text/plain;version=0.0.4;q=1,*/*;q=0.1");
      req.set(http::field::user_agent, "infergate-scraper");
      req.keep_alive(true);
      target->stream->expires_after(cfg.timeout);
      auto [wec, wn] = co_await http::async_write(*target->stream, req, kNoThrow);
      if (wec) {
        error = fmt::format("write: {}", wec.message());
      } else {
        http::response_parser<http::string_body> parser;
        parser.body_limit(kMaxMetricsBody);
        auto [rec, rn] = co_await http::async_read(*target->stream, buffer, parser, kNoThrow);
        if (rec) {
          error = fmt::format("read: {}", rec.message());
        } else if (parser.get().result_int() != 200) {
          error = fmt::format("HTTP status {}", parser.get().result_int());
        } else {
          openmetrics =
              parser.get()[http::field::content_type].find("openmetrics") != std::string_view::npos;
          body = std::move(parser.get().body());
        }
        if (!rec && !parser.get().keep_alive()) target->stream.reset();
      }
    }
    if (target->stopped) break;

    auto sample = std::make_shared<EndpointSample>();
    if (error.empty()) {
      metrics::ParseOptions options;
      options.openmetrics = openmetrics;
      metrics::parse_prometheus_text(body, parsed, options);
      sample->metrics = metrics::map_engine_metrics(parsed, target->engine);
      if (sample->metrics.reporting()) {
        sample->ok = true;
        sample->scraped_at = Clock::now();
        target->endpoint->dispatched_since_scrape.store(0, std::memory_order_relaxed);
        target->endpoint->prompt_bytes_since_scrape.store(0, std::memory_order_relaxed);
      } else {
        error = fmt::format("metrics page lacks {}",
                            metrics::describe_missing(sample->metrics.missing));
      }
    } else {
      target->stream.reset();  // reconnect next time
    }
    if (!sample->ok) {
      const auto& prev = target->latest;
      sample->failures = (prev ? prev->failures : 0) + 1;
      sample->error = std::move(error);
      if (prev && prev->ok) {
        // Keep the last good values (marked by their age) so /debug shows what was known.
        sample->metrics = prev->metrics;
        sample->scraped_at = prev->scraped_at;
      } else if (prev) {
        sample->scraped_at = prev->scraped_at;
      }
      self->failures_counter_->Increment();
      if (sample->failures == 1 || sample->failures % 200 == 0)
        log::warn("scrape of endpoint {} ({}:{}) failed: {} ({} in a row)", ep.name, ep.host,
                  ep.port, sample->error, sample->failures);
    }
    self->duration_->Observe(std::chrono::duration<double>(Clock::now() - started).count());
    target->latest = std::move(sample);

    const auto next = started + cfg.interval;
    if (Clock::now() < next) {
      target->timer.expires_at(next);
      co_await target->timer.async_wait(kNoThrow);
    }
  }
}

}  // namespace infergate::proxy
