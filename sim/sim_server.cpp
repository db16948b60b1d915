#include "sim/sim_server.h"

#include "common/log.h"
#include "sim/http_session.h"
#include "sim/json_text.h"
#include "sim/metrics_text.h"

#include <fmt/format.h>

#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
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

Duration ms_duration(double ms) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

// Engine durations are simulated time: --time-scale is applied by the clock mapping, not here.
EngineConfig engine_config(const SimOptions& o) {
  EngineConfig config;
  config.cost.base = ms_duration(o.step_base_ms);
  config.cost.per_prefill_token = ms_duration(o.step_prefill_token_ms);
  config.cost.per_decode_seq = ms_duration(o.step_decode_seq_ms);
  config.cost.lora_load = ms_duration(o.lora_load_ms);
  config.cost.fixed = o.fixed_latency();
  config.cost.prefill_step = ms_duration(o.ttft_ms.value_or(kDefaultTtftMs));
  config.cost.decode_step = ms_duration(o.itl_ms.value_or(kDefaultItlMs));
  config.max_num_seqs = o.max_num_seqs;
  config.max_num_batched_tokens = o.max_num_batched_tokens;
  config.chunked_prefill = o.enable_chunked_prefill;
  config.block_size = o.block_size;
  config.num_gpu_blocks = o.effective_num_gpu_blocks();
  config.prefix_caching = o.enable_prefix_caching;
  config.lora_enabled = o.lora_enabled();
  config.max_loras = o.max_loras;
  config.max_model_len = o.max_model_len;
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
      started_(SimClock::now()),
      started_unix_(unix_now()),
      virtual_now_(started_),
      engine_(engine_config(options_), started_),
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

TimePoint SimServer::sim_now() const {
  if (options_.time_scale <= 0) return virtual_now_;
  const auto wall = static_cast<double>((SimClock::now() - started_).count());
  return started_ + Duration(static_cast<Duration::rep>(wall / options_.time_scale));
}

TimePoint SimServer::wall_of(TimePoint sim) const {
  const auto elapsed = static_cast<double>((sim - started_).count());
  return started_ + Duration(static_cast<Duration::rep>(std::ceil(elapsed * options_.time_scale)));
}

double SimServer::unix_of(TimePoint sim) const {
  return started_unix_ + std::chrono::duration<double>(sim - started_).count();
}

int64_t SimServer::draw_output_tokens() {
  using Kind = OutputLengthDist::Kind;
  const double mean = static_cast<double>(options_.output_tokens);
  double drawn = mean;
  switch (options_.output_len_dist.kind) {
    case Kind::kFixed:
      return options_.output_tokens;
    case Kind::kUniform:
      return std::uniform_int_distribution<int64_t>(1, 2 * options_.output_tokens - 1)(ids_.rng());
    case Kind::kExponential:
      drawn = std::exponential_distribution<double>(1.0 / mean)(ids_.rng());
      break;
    case Kind::kLognormal: {
      const double sigma = options_.output_len_dist.sigma;
      drawn = std::lognormal_distribution<double>(std::log(mean) - sigma * sigma / 2,
                                                  sigma)(ids_.rng());
      break;
    }
  }
  return static_cast<int64_t>(std::clamp(std::round(drawn), 1.0, 1e12));
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
  const RequestId id = engine_.add_request(std::move(spec), sim_now());
  sessions_[id] = session;
  schedule_engine();
  return id;
}

void SimServer::abort(RequestId id) {
  if (sessions_.erase(id) == 0) return;
  engine_.abort_request(id, sim_now());
  schedule_engine();
}

std::variant<std::string, ApiError> SimServer::load_lora_adapter(std::string_view name,
                                                                 std::string_view path) {
  // vllm/entrypoints/openai/serving_models.py: checks, then the engine loads the adapter.
  if (name.empty() || path.empty()) {
    return ApiError{400, "InvalidUserInput", "Both 'lora_name' and 'lora_path' must be provided."};
  }
  if (catalog_.resolve(name) != nullptr) {
    return ApiError{400, "InvalidUserInput",
                    fmt::format("The lora adapter '{}' has already been loaded.", name)};
  }
  if (!options_.lora_enabled()) {
    return ApiError{400, "BadRequestError",
                    "LoRA is not enabled. Use --enable-lora to enable LoRA."};
  }
  catalog_.add_adapter(std::string(name), std::string(path));
  engine_.load_adapter(name);
  log::info("Loaded new LoRA adapter: name '{}', path '{}'", name, path);
  return fmt::format("Success: LoRA adapter '{}' added successfully.", name);
}

std::variant<std::string, ApiError> SimServer::unload_lora_adapter(std::string_view name) {
  if (name.empty()) {
    return ApiError{400, "InvalidUserInput",
                    "either 'lora_name' and 'lora_int_id' needs to be provided."};
  }
  if (!catalog_.remove_adapter(name)) {
    return ApiError{404, "NotFoundError",
                    fmt::format("The lora adapter '{}' cannot be found.", name)};
  }
  engine_.unload_adapter(name);
  log::info("Removed LoRA adapter: name '{}'", name);
  return fmt::format("Success: LoRA adapter '{}' removed successfully.", name);
}

void SimServer::schedule_engine() {
  if (stopping_) return;
  const std::optional<TimePoint> next = engine_.next_wakeup();
  if (!next) return;
  if (options_.time_scale <= 0) {
    // Virtual time: run as soon as the event loop gets here, after the handlers already queued
    // (so requests that arrive together are batched together).
    if (engine_run_posted_) return;
    engine_run_posted_ = true;
    asio::post(io_, [self = shared_from_this()] {
      self->engine_run_posted_ = false;
      if (!self->stopping_) self->run_engine();
    });
    return;
  }
  if (engine_timer_armed_ && *next >= engine_timer_at_) return;
  engine_timer_armed_ = true;
  engine_timer_at_ = *next;
  const uint64_t generation = ++engine_timer_generation_;
  // Re-arming cancels the pending wait; the generation check also drops a wait that had already
  // completed and was queued when we re-armed.
  engine_timer_.expires_at(wall_of(*next));
  engine_timer_.async_wait([this, generation](boost::system::error_code ec) {
    if (ec || generation != engine_timer_generation_) return;
    engine_timer_armed_ = false;
    run_engine();
  });
}

void SimServer::run_engine() {
  if (options_.time_scale <= 0) {
    // Run every step of the burst now, the virtual clock jumping to each step's end.
    for (;;) {
      events_.clear();
      engine_.advance(virtual_now_, &events_);
      dispatch_events();
      const std::optional<TimePoint> next = engine_.next_wakeup();
      if (!next || stopping_) break;
      virtual_now_ = std::max(virtual_now_, *next);
    }
    return;
  }
  events_.clear();
  // The timer fired at or after wall_of(engine_timer_at_); rounding must not make the engine see
  // a time before the wake-up it asked for.
  engine_.advance(std::max(sim_now(), engine_timer_at_), &events_);
  dispatch_events();
  schedule_engine();
}

void SimServer::dispatch_events() {
  for (const EngineEvent& event : events_) {
    const auto it = sessions_.find(event.id);
    if (it == sessions_.end()) continue;
    HttpSession* session = it->second;
    if (event.finished) sessions_.erase(it);
    session->on_engine_event(event);
  }
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

std::string SimServer::engine_json() const {
  const EngineStats e = engine_.stats();
  std::string out = "{\"sim_time_s\":";
  append_json_double(out, std::chrono::duration<double>(sim_now() - started_).count());
  const auto field = [&](std::string_view name, int64_t value) {
    out.append(",\"").append(name).append("\":");
    append_int(out, value);
  };
  field("steps", static_cast<int64_t>(e.steps));
  field("running", e.running);
  field("waiting", e.waiting);
  field("kv_blocks", e.kv_blocks);
  field("kv_free_blocks", e.kv_free_blocks);
  field("kv_cached_blocks", e.kv_cached_blocks);
  field("kv_evictions", static_cast<int64_t>(e.kv_evictions));
  out.append(",\"kv_usage\":");
  append_json_double(out, engine_.kv_cache_usage());
  const EngineMetrics& m = engine_.metrics();
  field("prefix_cache_queries", static_cast<int64_t>(m.prefix_cache_queries));
  field("prefix_cache_hits", static_cast<int64_t>(m.prefix_cache_hits));
  field("preemptions", static_cast<int64_t>(m.num_preemptions));
  field("lora_loads", static_cast<int64_t>(e.lora_loads));
  out.append(",\"resident_adapters\":[");
  for (size_t i = 0; i < e.resident_adapters.size(); ++i) {
    if (i != 0) out.push_back(',');
    append_json_string(out, e.resident_adapters[i]);
  }
  out.append("],\"step\":{\"prefill_tokens\":");
  append_int(out, e.step_prefill_tokens);
  out.append(",\"decode_seqs\":");
  append_int(out, e.step_decode_seqs);
  out.append(",\"duration_ms\":");
  append_json_double(out, std::chrono::duration<double, std::milli>(e.step_duration).count());
  out.append("}}");
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
  snapshot.show_hidden_metrics = options_.show_hidden_metrics_for_version.has_value();
  snapshot.lora_enabled = options_.lora_enabled();
  snapshot.max_lora = options_.max_loras;
  snapshot.lora_series = engine_.lora_series();
  snapshot.steady_now = sim_now();
  snapshot.unix_now = unix_of(snapshot.steady_now);
  snapshot.created_unix = started_unix_;
  return render_metrics(snapshot);
}

}  // namespace infergate::sim
