#include "sim/http_session.h"

#include "common/log.h"
#include "sim/sim_server.h"

#include <simdjson.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <random>

namespace infergate::sim {
namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// Bounds on what a client may send. The body limit is above the gateway's default (16 MiB) so the
// gateway, not the simulator, is what enforces it in tests.
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kBodyLimit = 32 * 1024 * 1024;
// Bytes a disconnect-watch read takes at a time, and how much pipelined input it buffers before
// it stops watching (the next request is then read as usual).
constexpr size_t kWatchReadBytes = 4096;
constexpr size_t kMaxPipelinedBytes = 256 * 1024;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

enum class Route {
  kCompletions,
  kChatCompletions,
  kEmbeddings,
  kModels,
  kLoadLora,
  kUnloadLora,
  kResetPrefixCache,
  kHealth,
  kMetrics,
  kSimStats,
  kSimRequests,
  kSimReset,
  kSimMetrics,
  kSimEngine,
  kUnknown,
};

struct RouteEntry {
  std::string_view path;
  http::verb method;
  Route route;
};

constexpr RouteEntry kRoutes[] = {
    {"/v1/completions", http::verb::post, Route::kCompletions},
    {"/v1/chat/completions", http::verb::post, Route::kChatCompletions},
    {"/v1/embeddings", http::verb::post, Route::kEmbeddings},
    {"/v1/models", http::verb::get, Route::kModels},
    {"/v1/load_lora_adapter", http::verb::post, Route::kLoadLora},
    {"/v1/unload_lora_adapter", http::verb::post, Route::kUnloadLora},
    {"/reset_prefix_cache", http::verb::post, Route::kResetPrefixCache},
    {"/health", http::verb::get, Route::kHealth},
    {"/metrics", http::verb::get, Route::kMetrics},
    {"/sim/stats", http::verb::get, Route::kSimStats},
    {"/sim/requests", http::verb::get, Route::kSimRequests},
    {"/sim/reset", http::verb::post, Route::kSimReset},
    {"/sim/metrics", http::verb::post, Route::kSimMetrics},
    {"/sim/engine", http::verb::get, Route::kSimEngine},
};

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

RecordedRequest record_of(const http::request<http::string_body>& request) {
  RecordedRequest record;
  record.method = std::string(request.method_string());
  record.target = std::string(request.target());
  for (const auto& field : request) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    record.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  record.body = request.body();
  return record;
}

bool is_http_parse_error(const boost::system::error_code& ec) {
  return ec.category() == beast::http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace

HttpSession::HttpSession(std::shared_ptr<SimServer> server, asio::ip::tcp::socket socket)
    : server_(std::move(server)),
      socket_(std::move(socket)),
      wake_timer_(socket_.get_executor()),
      idle_timer_(socket_.get_executor()) {
  wake_timer_.expires_at(TimePoint::max());
}

HttpSession::~HttpSession() {
  // Only an exception can end the coroutine with a generation in the engine; don't leave the
  // engine holding a dangling session.
  if (in_engine_ && !server_->stopping()) server_->abort(engine_id_);
}

void HttpSession::start(std::shared_ptr<HttpSession> session) {
  const auto executor = session->socket_.get_executor();
  asio::co_spawn(executor, run(std::move(session)), [](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      log::error("session failed: {}", e.what());
    }
  });
}

asio::awaitable<void> HttpSession::run(std::shared_ptr<HttpSession> self) {
  SimServer& server = *self->server_;
  while (co_await self->read_request()) {
    const std::string_view path = path_of(self->request_.target());
    // Once refusing (--refuse-after), a request on a connection that is still open is dropped
    // unanswered, so the client sees the connection close; test controls are still answered.
    if (server.refusing() && !path.starts_with("/sim/")) break;
    const bool v1 = path.starts_with("/v1/");
    if (v1) server.record_v1_request(record_of(self->request_));
    if (server.refusing()) self->keep_alive_ = false;

    const Outcome outcome = co_await self->dispatch();
    if (server.stopping()) co_return;
    if (v1) {
      SimStats& stats = server.stats();
      --stats.active;
      switch (outcome) {
        case Outcome::kCompleted:
          ++stats.completed_total;
          break;
        case Outcome::kAborted:
          ++stats.aborted_total;
          break;
        case Outcome::kFault:
          ++stats.faults_total;
          break;
      }
    }
    if (outcome != Outcome::kCompleted || !self->keep_alive_) break;
  }
  self->close_socket();
}

asio::awaitable<bool> HttpSession::read_request() {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kBodyLimit);

  arm_idle_timer();
  auto [ec, bytes] = co_await http::async_read_header(socket_, buffer_, parser, kNoThrow);
  idle_reading_ = false;
  idle_timer_.cancel();
  if (!ec && !parser.is_done() &&
      beast::iequals(parser.get()[http::field::expect], "100-continue")) {
    // curl waits a second for this before sending a body over 1 KiB.
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    std::tie(ec, bytes) = co_await asio::async_write(socket_, asio::buffer(kContinue), kNoThrow);
    if (ec) co_return false;
  }
  if (!ec && !parser.is_done()) {
    std::tie(ec, bytes) = co_await http::async_read(socket_, buffer_, parser, kNoThrow);
  }
  if (ec) {
    request_ = {};
    request_.version(11);
    keep_alive_ = false;
    if (ec == http::error::header_limit) {
      co_await write_response(http::status::request_header_fields_too_large, kJson,
                              detail_body("Request Header Fields Too Large"));
    } else if (ec == http::error::body_limit) {
      co_await write_response(http::status::payload_too_large, kJson,
                              detail_body("Request Entity Too Large"));
    } else if (is_http_parse_error(ec)) {
      co_await write_response(http::status::bad_request, kJson, detail_body("Bad Request"));
    }
    co_return false;
  }
  request_ = parser.release();
  keep_alive_ = request_.keep_alive();
  co_return true;
}

asio::awaitable<HttpSession::Outcome> HttpSession::dispatch() {
  SimServer& server = *server_;
  const std::string_view path = path_of(request_.target());
  Route route = Route::kUnknown;
  std::string_view allowed;
  for (const RouteEntry& entry : kRoutes) {
    if (entry.path != path) continue;
    if (entry.method == request_.method()) {
      route = entry.route;
    } else {
      allowed = http::to_string(entry.method);
    }
    break;
  }
  if (route == Route::kUnknown) {
    if (!allowed.empty()) {
      co_return co_await write_response(http::status::method_not_allowed, kJson,
                                        detail_body("Method Not Allowed"), allowed);
    }
    co_return co_await write_response(http::status::not_found, kJson, detail_body("Not Found"));
  }

  const bool control = path.starts_with("/sim/");
  if (!control && !server.ready()) {
    if (route == Route::kHealth || route == Route::kMetrics) {
      co_return co_await write_response(http::status::service_unavailable, {}, {});
    }
    co_return co_await write_error(error_for_status(
        503, "The model server is starting up (infergate-sim --startup-delay-ms)."));
  }

  switch (route) {
    case Route::kCompletions:
      co_return co_await handle_generation(Endpoint::kCompletions);
    case Route::kChatCompletions:
      co_return co_await handle_generation(Endpoint::kChatCompletions);
    case Route::kEmbeddings:
      co_return co_await handle_generation(Endpoint::kEmbeddings);
    case Route::kModels:
      co_return co_await write_response(http::status::ok, kJson,
                                        models_body(server.catalog(), server.unix_seconds_now(),
                                                    server.options().max_model_len, server.ids()));
    case Route::kLoadLora:
    case Route::kUnloadLora:
      co_return co_await handle_lora_update(route == Route::kLoadLora);
    case Route::kResetPrefixCache:
      // vLLM answers 200 either way; it resets only when no request holds blocks.
      server.reset_prefix_cache();
      co_return co_await write_response(http::status::ok, {}, {});
    case Route::kHealth:
      co_return co_await write_response(http::status::ok, {}, {});
    case Route::kMetrics:
      co_return co_await handle_metrics();
    case Route::kSimStats:
      co_return co_await write_response(http::status::ok, kJson, server.stats_json());
    case Route::kSimRequests:
      co_return co_await write_response(http::status::ok, kJson, server.requests_json());
    case Route::kSimReset:
      server.reset_test_state();
      co_return co_await write_response(http::status::ok, kJson, server.stats_json());
    case Route::kSimMetrics:
      co_return co_await handle_sim_metrics();
    case Route::kSimEngine:
      co_return co_await write_response(http::status::ok, kJson, server.engine_json());
    case Route::kUnknown:
      break;
  }
  co_return co_await write_response(http::status::not_found, kJson, detail_body("Not Found"));
}

asio::awaitable<HttpSession::Outcome> HttpSession::handle_generation(Endpoint endpoint) {
  SimServer& server = *server_;
  const SimOptions& options = server.options();
  if (options.error_rate > 0 &&
      std::bernoulli_distribution(options.error_rate)(server.ids().rng())) {
    co_return co_await write_error(
        error_for_status(options.error_status, "Simulated failure (infergate-sim --error-rate)."));
  }
  auto parsed =
      parse_openai_request(endpoint, request_.body(), server.json_parser(), options.block_size);
  if (const ApiError* error = std::get_if<ApiError>(&parsed)) {
    co_return co_await write_error(*error);
  }
  const OpenAiRequest& request = std::get<OpenAiRequest>(parsed);
  auto planned = plan_generation(request, server.catalog(), options.max_model_len,
                                 server.draw_output_tokens());
  if (const ApiError* error = std::get_if<ApiError>(&planned)) {
    co_return co_await write_error(*error);
  }
  GenerationPlan& plan = std::get<GenerationPlan>(planned);
  // The catalog may change (adapter unloads) while the response is generated.
  model_name_ = plan.model->name;
  plan.model = nullptr;

  // vLLM builds the id from the client's X-Request-Id when there is one.
  const std::string_view prefix = endpoint == Endpoint::kCompletions       ? "cmpl-"
                                  : endpoint == Endpoint::kChatCompletions ? "chatcmpl-"
                                                                           : "embd-";
  const std::string_view request_id = request_["x-request-id"];
  const std::string id = std::string(prefix).append(request_id.empty() ? server.ids().next_hex()
                                                                       : std::string(request_id));
  const ResponseMeta meta{id, server.unix_seconds_now(), model_name_};

  streaming_ = request.stream;
  tokens_ready_ = 0;
  cached_tokens_ = 0;
  finished_ = false;
  engine_id_ = server.submit(plan.spec, this);
  in_engine_ = true;
  start_watch();
  Outcome outcome = Outcome::kCompleted;
  if (streaming_) {
    outcome = co_await respond_stream(request, plan, meta);
  } else {
    outcome = co_await respond_whole(request, plan, meta);
  }
  co_await finish_watch();
  if (in_engine_) {
    in_engine_ = false;
    if (!server.stopping()) server.abort(engine_id_);
  }
  co_return outcome;
}

asio::awaitable<HttpSession::Outcome> HttpSession::respond_whole(const OpenAiRequest& request,
                                                                 const GenerationPlan& plan,
                                                                 const ResponseMeta& meta) {
  while (!finished_ && !peer_gone_) co_await wait_wake();
  if (!finished_) co_return Outcome::kAborted;
  const Usage usage = usage_of(plan.spec.prompt_tokens, plan.spec.output_tokens);
  const FinishReason reason = plan.spec.finish_reason;
  std::string body;
  switch (request.endpoint) {
    case Endpoint::kCompletions:
      body = completion_body(meta, generated_text(usage.completion_tokens, reason), reason, usage);
      break;
    case Endpoint::kChatCompletions:
      body = chat_body(meta, generated_text(usage.completion_tokens, reason), reason, usage);
      break;
    case Endpoint::kEmbeddings:
      body = embeddings_body(meta, request.input_hashes, plan.spec.prompt_tokens);
      break;
  }
  co_return co_await write_response(http::status::ok, kJson, std::move(body));
}

asio::awaitable<HttpSession::Outcome> HttpSession::respond_stream(const OpenAiRequest& request,
                                                                  const GenerationPlan& plan,
                                                                  const ResponseMeta& meta) {
  // vLLM (Starlette's StreamingResponse) sends the headers at once; events follow as generated.
  http::response<http::empty_body> response{http::status::ok, request_.version()};
  response.set(http::field::content_type, "text/event-stream; charset=utf-8");
  response.set("x-sim-pod", server_->pod_name());
  response.keep_alive(keep_alive_);
  response.chunked(true);
  http::response_serializer<http::empty_body> serializer{response};
  auto [ec, bytes] = co_await http::async_write_header(socket_, serializer, kNoThrow);
  if (ec) co_return Outcome::kAborted;

  events_framed_ = 0;
  const std::optional<int64_t>& limit = server_->options().fail_mid_stream_after;
  if (limit && *limit == 0) {
    close_socket();
    co_return Outcome::kFault;
  }
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  const FinishReason reason = plan.spec.finish_reason;
  const int64_t total = plan.spec.output_tokens;
  int64_t sent = 0;
  bool cut = false;
  for (;;) {
    while (sent == tokens_ready_ && !peer_gone_) co_await wait_wake();
    if (peer_gone_) co_return Outcome::kAborted;

    // Normally one token; several only if the socket held us back while tokens kept coming.
    out_.clear();
    while (sent < tokens_ready_ && !cut) {
      ++sent;
      const bool last = sent == total;
      const FinishReason* finish = last ? &reason : nullptr;
      const TokenText text = token_text(sent, last && reason == FinishReason::kStop);
      if (chat && sent == 1) {
        event_.clear();
        append_chat_role_event(event_, meta);
        if (!frame_event()) {
          cut = true;
          break;
        }
      }
      event_.clear();
      if (chat) {
        append_chat_event(event_, meta, text.view(), finish);
      } else {
        append_completion_event(event_, meta, text.view(), finish);
      }
      cut = !frame_event();
      if (!last || cut) continue;
      if (request.include_usage) {
        event_.clear();
        append_usage_event(event_, meta, request.endpoint,
                           usage_of(plan.spec.prompt_tokens, total));
        cut = !frame_event();
        if (cut) break;
      }
      event_.clear();
      append_done_event(event_);
      cut = !frame_event();
      if (!cut) out_.append("0\r\n\r\n");  // last chunk
    }
    std::tie(ec, bytes) = co_await asio::async_write(socket_, asio::buffer(out_), kNoThrow);
    if (ec) co_return Outcome::kAborted;
    if (cut) {
      close_socket();
      co_return Outcome::kFault;
    }
    if (sent == total) co_return Outcome::kCompleted;
  }
}

bool HttpSession::frame_event() {
  char size[16];
  const auto [end, ec] = std::to_chars(size, size + sizeof(size), event_.size(), 16);
  (void)ec;
  out_.append(size, static_cast<size_t>(end - size)).append("\r\n").append(event_).append("\r\n");
  ++events_framed_;
  const std::optional<int64_t>& limit = server_->options().fail_mid_stream_after;
  return !(limit && events_framed_ >= *limit);
}

asio::awaitable<HttpSession::Outcome> HttpSession::handle_metrics() {
  const SimOptions& options = server_->options();
  if (options.metrics_delay_ms > 0) {
    asio::steady_timer delay(socket_.get_executor(), server_->scaled_ms(options.metrics_delay_ms));
    co_await delay.async_wait(kNoThrow);
  }
  if (options.metrics_fail) {
    co_return co_await write_response(http::status::internal_server_error, "text/plain",
                                      "Internal Server Error");
  }
  co_return co_await write_response(http::status::ok, kPrometheusText, server_->metrics_text());
}

asio::awaitable<HttpSession::Outcome> HttpSession::handle_sim_metrics() {
  // {"waiting": N|null, "running": N|null, "kv_usage": F|null}: a number sets the override, null
  // clears it, an absent key leaves it.
  std::string& body = request_.body();
  body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element doc;
  simdjson::dom::object fields;
  if (server_->json_parser().parse(body.data(), body.size(), false).get(doc) != simdjson::SUCCESS ||
      doc.get(fields) != simdjson::SUCCESS) {
    co_return co_await write_response(http::status::bad_request, kJson,
                                      detail_body("expected a JSON object"));
  }
  MetricOverrides updated = server_->metric_overrides();
  for (const auto field : fields) {
    const bool is_null = field.value.is_null();
    int64_t count = 0;
    double fraction = 0;
    if (field.key == "waiting" || field.key == "running") {
      auto& target = field.key == "waiting" ? updated.waiting : updated.running;
      if (is_null) {
        target.reset();
      } else if (field.value.get(count) == simdjson::SUCCESS && count >= 0) {
        target = count;
      } else {
        co_return co_await write_response(http::status::bad_request, kJson,
                                          detail_body("waiting/running: a count or null"));
      }
    } else if (field.key == "kv_usage") {
      if (is_null) {
        updated.kv_usage.reset();
      } else if (field.value.get(fraction) == simdjson::SUCCESS && fraction >= 0 && fraction <= 1) {
        updated.kv_usage = fraction;
      } else {
        co_return co_await write_response(http::status::bad_request, kJson,
                                          detail_body("kv_usage: a number in 0..1 or null"));
      }
    }
  }
  server_->metric_overrides() = updated;
  co_return co_await write_response(http::status::ok, kJson, server_->overrides_json());
}

asio::awaitable<HttpSession::Outcome> HttpSession::write_response(http::status status,
                                                                  std::string_view content_type,
                                                                  std::string body,
                                                                  std::string_view allow) {
  http::response<http::string_body> response{status, request_.version()};
  if (!content_type.empty()) response.set(http::field::content_type, content_type);
  response.set("x-sim-pod", server_->pod_name());
  if (!allow.empty()) response.set(http::field::allow, allow);
  response.keep_alive(keep_alive_);
  response.body() = std::move(body);
  response.prepare_payload();
  auto [ec, bytes] = co_await http::async_write(socket_, response, kNoThrow);
  co_return ec ? Outcome::kAborted : Outcome::kCompleted;
}

asio::awaitable<HttpSession::Outcome> HttpSession::write_error(ApiError error) {
  co_return co_await write_response(static_cast<http::status>(error.status), kJson,
                                    error_body(error));
}

Usage HttpSession::usage_of(int64_t prompt_tokens, int64_t completion_tokens) const {
  Usage usage{prompt_tokens, completion_tokens, std::nullopt};
  if (server_->options().enable_prompt_tokens_details && cached_tokens_ > 0) {
    usage.cached_tokens = cached_tokens_;
  }
  return usage;
}

asio::awaitable<HttpSession::Outcome> HttpSession::handle_lora_update(bool load) {
  // LoadLoRAAdapterRequest {lora_name, lora_path} / UnloadLoRAAdapterRequest {lora_name}.
  std::string& body = request_.body();
  body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element doc;
  simdjson::dom::object fields;
  if (server_->json_parser().parse(body.data(), body.size(), false).get(doc) != simdjson::SUCCESS) {
    co_return co_await write_error(
        bad_request("[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error'}]"));
  }
  if (doc.get(fields) != simdjson::SUCCESS) {
    co_return co_await write_error(bad_request(
        "[{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid "
        "dictionary or object to extract fields from'}]"));
  }
  std::string name;
  std::string path;
  for (const auto field : fields) {
    std::string_view text;
    if (field.key != "lora_name" && field.key != "lora_path") continue;
    if (field.value.get(text) != simdjson::SUCCESS) {
      co_return co_await write_error(
          bad_request(fmt::format("[{{'type': 'string_type', 'loc': ('body', '{}'), 'msg': "
                                  "'Input should be a valid string'}}]",
                                  field.key)));
    }
    (field.key == "lora_name" ? name : path) = std::string(text);
  }
  std::string_view missing;
  if (fields["lora_name"].error() != simdjson::SUCCESS) missing = "lora_name";
  if (load && missing.empty() && fields["lora_path"].error() != simdjson::SUCCESS) {
    missing = "lora_path";
  }
  if (!missing.empty()) {
    co_return co_await write_error(bad_request(fmt::format(
        "[{{'type': 'missing', 'loc': ('body', '{}'), 'msg': 'Field required'}}]", missing)));
  }
  auto result = load ? server_->load_lora_adapter(name, path) : server_->unload_lora_adapter(name);
  if (const ApiError* error = std::get_if<ApiError>(&result)) {
    co_return co_await write_error(*error);
  }
  if (load && server_->options().lora_load_ms > 0) {
    // vLLM answers once the engine has loaded the adapter.
    asio::steady_timer delay(socket_.get_executor(),
                             server_->scaled_ms(server_->options().lora_load_ms));
    co_await delay.async_wait(kNoThrow);
  }
  // Starlette's Response(content=str): text without a content type.
  co_return co_await write_response(http::status::ok, {}, std::get<std::string>(std::move(result)));
}

void HttpSession::on_engine_event(const EngineEvent& event) {
  tokens_ready_ = event.tokens_done;
  cached_tokens_ = event.cached_tokens;
  if (event.finished) {
    finished_ = true;
    in_engine_ = false;  // the engine has forgotten it
  }
  // A whole (non-streamed) response only cares about the end.
  if (streaming_ || event.finished) wake();
}

// The wake timer never expires; wake() cancels the pending wait. A wake with nobody waiting is
// lost, so every waiter re-checks its condition before waiting (single thread: nothing can slip
// in between the check and the wait).
asio::awaitable<void> HttpSession::wait_wake() {
  co_await wake_timer_.async_wait(kNoThrow);
}

void HttpSession::wake() {
  wake_timer_.cancel();
}

void HttpSession::arm_idle_timer() {
  const double timeout_s = server_->options().keep_alive_timeout_s;
  if (timeout_s <= 0) return;
  idle_reading_ = true;
  idle_timer_.expires_after(
      std::chrono::duration_cast<Duration>(std::chrono::duration<double>(timeout_s)));
  idle_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    const auto self = weak.lock();
    // idle_reading_ guards against a completion queued just before the read finished.
    if (self && self->idle_reading_) self->close_socket();
  });
}

void HttpSession::start_watch() {
  stop_watching_ = false;
  peer_gone_ = false;
  arm_watch();
}

void HttpSession::arm_watch() {
  watching_ = true;
  socket_.async_read_some(
      buffer_.prepare(kWatchReadBytes),
      asio::bind_cancellation_slot(
          watch_cancel_.slot(),
          [self = shared_from_this()](boost::system::error_code ec, size_t bytes) {
            self->on_watch(ec, bytes);
          }));
}

void HttpSession::on_watch(boost::system::error_code ec, size_t bytes) {
  watching_ = false;
  if (!ec) {
    // A pipelined next request: keep it for later and keep watching while there is room.
    buffer_.commit(bytes);
    if (!stop_watching_ && buffer_.size() < kMaxPipelinedBytes) arm_watch();
  } else if (ec != asio::error::operation_aborted) {
    peer_gone_ = true;  // EOF or reset
  }
  wake();
}

asio::awaitable<void> HttpSession::finish_watch() {
  stop_watching_ = true;
  if (watching_) watch_cancel_.emit(asio::cancellation_type::terminal);
  while (watching_) co_await wait_wake();
}

void HttpSession::close_socket() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace infergate::sim
