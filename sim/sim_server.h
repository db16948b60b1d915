#pragma once
// The simulator's I/O half: the listener, the engine clock (one timer driving Engine::advance for
// every request) and the state the HTTP sessions share: counters, the request log, metric
// overrides, the model catalog. Everything runs on one io_context thread, so nothing here is
// locked; a simulator fleet scales by running more processes.
//
// Time: the engine runs in simulated time, which advances 1/--time-scale times as fast as the
// steady clock from start-up (sim_now()); its wake-ups are mapped back to the wall clock for the
// timer (wall_of()). Everything the simulator reports (metrics, "created") is simulated time. With
// --time-scale 0 simulated time is a virtual clock that jumps from one engine wake-up to the next
// as soon as the event loop gets to it.
//
// Lifetime: sessions hold a shared_ptr to the server, so it outlives them even while the
// io_context destroys suspended sessions at shutdown; stopping() tells their clean-up paths to
// leave the engine alone then.

#include "sim/engine.h"
#include "sim/id_generator.h"
#include "sim/model_catalog.h"
#include "sim/openai_request.h"
#include "sim/options.h"
#include "sim/request_log.h"

#include <simdjson.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace infergate::sim {

namespace asio = boost::asio;

class HttpSession;

// GET /sim/stats. Counts cover /v1/* requests only.
struct SimStats {
  int64_t requests_total = 0;   // received
  int64_t completed_total = 0;  // whole response written (any status)
  int64_t aborted_total = 0;    // the client went away before the response was complete
  int64_t faults_total = 0;     // cut by --fail-mid-stream-after
  int64_t active = 0;           // received, response not finished
};

// Replace the live values in /metrics (flags at start, POST /sim/metrics at run time).
struct MetricOverrides {
  std::optional<int64_t> waiting;
  std::optional<int64_t> running;
  std::optional<double> kv_usage;
};

class SimServer : public std::enable_shared_from_this<SimServer> {
 public:
  // Resolves, binds and listens; throws boost::system::system_error when it cannot (start-up
  // only).
  SimServer(asio::io_context& io, SimOptions options);

  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  void start();  // starts accepting
  void stop();   // stops accepting; sessions stop touching the engine

  const SimOptions& options() const { return options_; }
  const ModelCatalog& catalog() const { return catalog_; }
  const Engine& engine() const { return engine_; }
  const std::string& pod_name() const { return pod_name_; }
  bool stopping() const { return stopping_; }
  // False until --startup-delay-ms has passed.
  bool ready() const { return SimClock::now() >= ready_at_; }
  // --refuse-after reached: the listener is closed and connections end after their response.
  bool refusing() const { return refusing_; }
  // A delay of the command line in milliseconds, times --time-scale (a wall-clock duration).
  Duration scaled_ms(double ms) const;
  // Simulated time now, and the wall (steady) time at which a simulated time comes.
  TimePoint sim_now() const;
  TimePoint wall_of(TimePoint sim) const;
  // Unix time of a simulated time (what metrics and "created" report).
  double unix_of(TimePoint sim) const;
  int64_t unix_seconds_now() const { return static_cast<int64_t>(unix_of(sim_now())); }

  // The output length of a request that stops on its own: a draw from --output-len-dist.
  int64_t draw_output_tokens();

  // Engine access for sessions. The session gets on_engine_event() calls from the engine timer
  // (never inline from submit/abort) until the finishing event or abort().
  RequestId submit(RequestSpec spec, HttpSession* session);
  void abort(RequestId id);

  // POST /v1/load_lora_adapter and /v1/unload_lora_adapter: vLLM's success text or error.
  std::variant<std::string, ApiError> load_lora_adapter(std::string_view name,
                                                        std::string_view path);
  std::variant<std::string, ApiError> unload_lora_adapter(std::string_view name);
  bool reset_prefix_cache() { return engine_.reset_prefix_cache(); }
  std::string engine_json() const;

  // Counts a received /v1/* request and keeps it for /sim/requests; applies --refuse-after.
  void record_v1_request(RecordedRequest request);
  SimStats& stats() { return stats_; }
  void reset_test_state();
  std::string stats_json() const;
  std::string requests_json() const { return request_log_.to_json(); }
  MetricOverrides& metric_overrides() { return overrides_; }
  std::string overrides_json() const;
  std::string metrics_text() const;

  IdGenerator& ids() { return ids_; }
  simdjson::dom::parser& json_parser() { return json_parser_; }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<SimServer> self);
  void schedule_engine();
  void run_engine();
  void dispatch_events();

  asio::io_context& io_;
  SimOptions options_;
  ModelCatalog catalog_;
  std::string pod_name_;
  asio::ip::tcp::acceptor acceptor_;
  TimePoint ready_at_;
  TimePoint started_;  // wall and simulated time coincide at start-up
  double started_unix_ = 0;
  TimePoint virtual_now_;  // simulated time with --time-scale 0
  bool stopping_ = false;
  bool refusing_ = false;
  int64_t lifetime_v1_requests_ = 0;  // unlike stats_, not reset by /sim/reset

  Engine engine_;
  asio::steady_timer engine_timer_;
  bool engine_timer_armed_ = false;
  TimePoint engine_timer_at_;  // simulated time the timer is armed for
  bool engine_run_posted_ = false;
  uint64_t engine_timer_generation_ = 0;
  std::unordered_map<RequestId, HttpSession*> sessions_;
  std::vector<EngineEvent> events_;  // reused by run_engine

  SimStats stats_;
  RequestLog request_log_;
  MetricOverrides overrides_;
  IdGenerator ids_;
  simdjson::dom::parser json_parser_;
};

}  // namespace infergate::sim
