#include "sim/sim_server.h"

#include "common/log.h"
#include "sim/http_session.h"
#include "sim/json_text.h"
#include "sim/metrics_text.h"

#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cmath>
#include <random>

namespace infergate::sim {
namespace {

using asio::ip::tcp;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "infergate-sim";
  return buf;
}

uint64_t seed_of(const SimOptions& options) {
  if (options.seed) return *options.seed;
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

EngineConfig engine_config(const SimOptions& o, Duration ttft, Duration itl) {
  EngineConfig config;
  config.ttft = ttft;
  config.itl = itl;
  config.max_num_seqs = o.max_num_seqs;
  config.max_loras = o.max_loras;
  config.block_size = o.block_size;
  config.num_gpu_blocks = o.effective_num_gpu_blocks();
  config.max_model_len = o.max_model_len;
  config.lora_enabled = o.lora_enabled();
  return config;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

tcp::endpoint resolve(asio::io_context& io, const std::string& host, uint16_t port) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) return {address, port};
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive);
  return results.begin()->endpoint();
}

tcp::acceptor open_acceptor(asio::io_context& io, const SimOptions& options) {
  const tcp::endpoint endpoint = resolve(io, options.host, options.port);
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor;
}

}  // namespace

SimServer::SimServer(asio::io_context& io, SimOptions options)
    : io_(io),
      options_(std::move(options)),
      catalog_(options_),
      pod_name_(options_.pod_name.empty() ? host_name() : options_.pod_name),
      acceptor_(open_acceptor(io, options_)),
      ready_at_(SimClock::now() + scaled_ms(options_.startup_delay_ms)),
      started_unix_(unix_now()),
      engine_(engine_config(options_, scaled_ms(options_.ttft_ms), scaled_ms(options_.itl_ms)),
              SimClock::now()),
      engine_timer_(io),
      ids_(seed_of(options_)) {
  overrides_.waiting = options_.metrics_waiting;
  overrides_.running = options_.metrics_running;
  overrides_.kv_usage = options_.metrics_kv_usage;
}

Duration SimServer::scaled_ms(double ms) const {
  const double ns = std::round(ms * options_.time_scale * 1e6);
  return std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(static_cast<int64_t>(ns)));
}

void SimServer::start() {
  asio::co_spawn(io_, accept_loop(shared_from_this()), asio::detached);
}

void SimServer::stop() {
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  engine_timer_.cancel();
}

asio::awaitable<void> SimServer::accept_loop(std::shared_ptr<SimServer> self) {
  constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, socket] = co_await self->acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) co_return;
    if (ec) {
      // Typically EMFILE under a connection storm: back off instead of spinning.
      log::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(self->io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    // Each SSE event must leave at once; Nagle would hold small writes back.
    socket.set_option(tcp::no_delay(true), ec);
    HttpSession::start(std::make_shared<HttpSession>(self, std::move(socket)));
  }
}

RequestId SimServer::submit(RequestSpec spec, HttpSession* session) {
  const RequestId id = engine_.add_request(std::move(spec), SimClock::now());
  sessions_[id] = session;
  schedule_engine();
  return id;
}

void SimServer::abort(RequestId id) {
  if (sessions_.erase(id) == 0) return;
  engine_.abort_request(id, SimClock::now());
  schedule_engine();
}

void SimServer::schedule_engine() {
  if (stopping_) return;
  const std::optional<TimePoint> next = engine_.next_wakeup();
  if (!next) return;
  if (engine_timer_armed_ && *next >= engine_timer_at_) return;
  engine_timer_armed_ = true;
  engine_timer_at_ = *next;
  const uint64_t generation = ++engine_timer_generation_;
  // Re-arming cancels the pending wait; the generation check also drops a wait that had already
  // completed and was queued when we re-armed.
  engine_timer_.expires_at(*next);
  engine_timer_.async_wait([this, generation](boost::system::error_code ec) {
    if (ec || generation != engine_timer_generation_) return;
    engine_timer_armed_ = false;
    run_engine();
  });
}

void SimServer::run_engine() {
  events_.clear();
  engine_.advance(SimClock::now(), &events_);
  for (const EngineEvent& event : events_) {
    const auto it = sessions_.find(event.id);
    if (it == sessions_.end()) continue;
    HttpSession* session = it->second;
    if (event.finished) sessions_.erase(it);
    session->on_engine_event(event);
  }
  schedule_engine();
}

void SimServer::record_v1_request(RecordedRequest request) {
  ++stats_.requests_total;
  ++stats_.active;
  request_log_.add(std::move(request));
  ++lifetime_v1_requests_;
  if (options_.refuse_after && lifetime_v1_requests_ >= *options_.refuse_after && !refusing_) {
    refusing_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    log::info("--refuse-after {} reached: listener closed", *options_.refuse_after);
  }
}

void SimServer::reset_test_state() {
  const int64_t active = stats_.active;
  stats_ = {};
  stats_.active = active;  // a gauge of requests still running, not a counter
  request_log_.clear();
}

std::string SimServer::stats_json() const {
  std::string out = "{\"pod\":";
  append_json_string(out, pod_name_);
  const auto field = [&](std::string_view name, int64_t value) {
    out.append(",\"").append(name).append("\":");
    append_int(out, value);
  };
  field("requests_total", stats_.requests_total);
  field("completed_total", stats_.completed_total);
  field("aborted_total", stats_.aborted_total);
  field("faults_total", stats_.faults_total);
  field("active", stats_.active);
  out.push_back('}');
  return out;
}

std::string SimServer::overrides_json() const {
  std::string out = "{\"waiting\":";
  if (overrides_.waiting)
    append_int(out, *overrides_.waiting);
  else
    out.append("null");
  out.append(",\"running\":");
  if (overrides_.running)
    append_int(out, *overrides_.running);
  else
    out.append("null");
  out.append(",\"kv_usage\":");
  if (overrides_.kv_usage)
    append_json_double(out, *overrides_.kv_usage);
  else
    out.append("null");
  out.push_back('}');
  return out;
}

std::string SimServer::metrics_text() const {
  MetricsSnapshot snapshot;
  snapshot.model_name = catalog_.primary_name();
  snapshot.running = static_cast<double>(overrides_.running.value_or(engine_.num_running()));
  snapshot.waiting = static_cast<double>(overrides_.waiting.value_or(engine_.num_waiting()));
  snapshot.kv_cache_usage = overrides_.kv_usage.value_or(engine_.kv_cache_usage());
  snapshot.engine = &engine_.metrics();
  snapshot.block_size = options_.block_size;
  snapshot.num_gpu_blocks = options_.effective_num_gpu_blocks();
  snapshot.num_gpu_blocks_override = options_.num_gpu_blocks_override;
  snapshot.enable_prefix_caching = options_.enable_prefix_caching;
  snapshot.lora_enabled = options_.lora_enabled();
  snapshot.max_lora = options_.max_loras;
  snapshot.lora_series = engine_.lora_series();
  snapshot.steady_now = SimClock::now();
  snapshot.unix_now = unix_now();
  snapshot.created_unix = started_unix_;
  return render_metrics(snapshot);
}

}  // namespace infergate::sim
