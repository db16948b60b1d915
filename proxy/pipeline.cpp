#include "proxy/pipeline.h"

#include <fmt/format.h>

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <memory>
#include <optional>
#include <span>

#include "common/log.h"
#include "proxy/errors.h"
#include "proxy/feed_parser.h"
#include "proxy/lazy_deadline.h"
#include "proxy/openai_body.h"
#include "proxy/scraper.h"
#include "proxy/socket_io.h"
#include "proxy/worker.h"

namespace infergate::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using ResponseParser = http::response_parser<http::buffer_body, FieldsAllocator>;

constexpr uint32_t kUpstreamHeaderLimit = 64 * 1024;
// A pool's candidates, without a heap allocation for pools of up to 16 endpoints.
using EndpointViews = boost::container::small_vector<routing::EndpointView, 16>;
constexpr size_t kRelayChunk = 16 * 1024;

bool is_routed_path(std::string_view p) {
  return p == "/v1/completions" || p == "/v1/chat/completions" || p == "/v1/embeddings" ||
         p == "/v1/responses";
}

std::string_view path_of(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && beast::iequals(s.substr(0, prefix.size()), prefix);
}

bool contains_icase(std::string_view s, std::string_view needle) {
  if (needle.size() > s.size()) return false;
  for (size_t i = 0; i + needle.size() <= s.size(); ++i)
    if (beast::iequals(s.substr(i, needle.size()), needle)) return true;
  return false;
}

// RFC 9110 §7.6.1 connection-specific fields, plus the old Keep-Alive/Proxy-Connection.
bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection",
                                                "keep-alive",
                                                "proxy-connection",
                                                "proxy-authenticate",
                                                "proxy-authorization",
                                                "te",
                                                "trailer",
                                                "transfer-encoding",
                                                "upgrade"};
  for (auto n : kNames)
    if (beast::iequals(name, n)) return true;
  return false;
}

// Names listed in a Connection header are hop-by-hop too. (Views into `value`.)
template <typename Out>
void collect_connection_tokens(std::string_view value, Out& out) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    auto token = value.substr(pos, comma - pos);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty()) out.emplace_back(token);
    pos = comma + 1;
  }
}

// Request fields that stay with this hop: hop-by-hop, Expect (answered here), the
// gateway-destination header (the endpoint is ours to pick), and the fields the gateway sets.
bool dropped_request_field(std::string_view name) {
  return is_hop_by_hop(name) || beast::iequals(name, "expect") ||
         starts_with_icase(name, "x-gateway-destination-endpoint");
}

// Values for_each_upstream_field builds; they must outlive the use of the fields.
struct UpstreamFieldScratch {
  std::string forwarded_for;
  std::array<char, 24> length{};
};

// The header fields the pod receives (HTTP/1.1 and h2c upstreams alike), in order: the client's
// fields without the dropped ones and those named by Connection, then x-request-id,
// x-forwarded-for (the client's, appended to), x-forwarded-proto and the Content-Length of the
// (rewritten) body. Nothing is inserted into or erased from the message (each would allocate).
template <typename Put>
void for_each_upstream_field(const Request& msg, const DownstreamRequest& req,
                             std::string_view request_id, UpstreamFieldScratch& scratch,
                             Put&& put) {
  boost::container::small_vector<std::string_view, 4> listed;  // named by Connection
  std::string_view xff;
  for (const auto& f : msg) {
    if (f.name() == http::field::connection) collect_connection_tokens(f.value(), listed);
    if (beast::iequals(f.name_string(), "x-forwarded-for")) xff = f.value();
  }
  for (const auto& f : msg) {
    const auto name = f.name_string();
    if (dropped_request_field(name) || f.name() == http::field::content_length ||
        beast::iequals(name, "x-request-id") || beast::iequals(name, "x-forwarded-for") ||
        beast::iequals(name, "x-forwarded-proto"))
      continue;
    if (std::any_of(listed.begin(), listed.end(),
                    [&](std::string_view d) { return beast::iequals(d, name); }))
      continue;
    put(name, f.value());
  }
  put("x-request-id", request_id);
  if (xff.empty()) {
    put("x-forwarded-for", req.client_address);
  } else {
    scratch.forwarded_for.assign(xff.data(), xff.size());
    scratch.forwarded_for.append(", ");
    scratch.forwarded_for.append(req.client_address);
    put("x-forwarded-for", scratch.forwarded_for);
  }
  put("x-forwarded-proto", req.tls ? "https" : "http");
  auto& n = scratch.length;
  const auto r = std::to_chars(n.data(), n.data() + n.size(), msg.body().size());
  put("Content-Length", std::string_view(n.data(), static_cast<size_t>(r.ptr - n.data())));
}

// An HTTP/1.1 upstream's request line and header block.
void serialize_upstream_head(const Request& msg, const DownstreamRequest& req,
                             std::string_view request_id, std::string& out) {
  out.clear();
  const auto method = msg.method_string();
  const auto target = msg.target();
  out.append(method.data(), method.size());
  out.push_back(' ');
  out.append(target.data(), target.size());
  out.append(" HTTP/1.1\r\n");
  UpstreamFieldScratch scratch;
  for_each_upstream_field(msg, req, request_id, scratch,
                          [&out](std::string_view name, std::string_view value) {
                            out.append(name.data(), name.size());
                            out.append(": ");
                            out.append(value.data(), value.size());
                            out.append("\r\n");
                          });
  out.append("\r\n");
}

HeaderList response_headers(const ResponseParser::value_type& res, const std::string& request_id) {
  HeaderList out;
  out.reserve(static_cast<size_t>(std::distance(res.begin(), res.end())) + 2);
  boost::container::small_vector<std::string_view, 4> drop;
  if (auto c = res.find(http::field::connection); c != res.end())
    collect_connection_tokens(c->value(), drop);
  for (const auto& f : res) {
    const auto name = f.name_string();
    if (is_hop_by_hop(name) || f.name() == http::field::content_length) continue;
    if (std::any_of(drop.begin(), drop.end(),
                    [&](std::string_view d) { return beast::iequals(d, name); }))
      continue;
    out.emplace_back(std::string(name), std::string(f.value()));
  }
  if (res.find("x-request-id") == res.end()) out.emplace_back("x-request-id", request_id);
  return out;
}

// Holds one in-flight slot of an endpoint; released on every path, cancellation included.
class InFlight {
 public:
  InFlight() = default;
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  ~InFlight() { release(); }
  void acquire(EndpointRuntime* ep) {
    release();
    ep_ = ep;
    ep_->in_flight.fetch_add(1, std::memory_order_relaxed);
    ep_->requests_total.fetch_add(1, std::memory_order_relaxed);
  }
  void release() {
    if (ep_) ep_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    ep_ = nullptr;
  }

 private:
  EndpointRuntime* ep_ = nullptr;
};

class RunningGauge {
 public:
  explicit RunningGauge(prometheus::Gauge* g) : g_(g) { g_->Increment(); }
  RunningGauge(const RunningGauge&) = delete;
  RunningGauge& operator=(const RunningGauge&) = delete;
  ~RunningGauge() { g_->Decrement(); }

 private:
  prometheus::Gauge* g_;
};

awaitable<bool> cancelled() {
  auto state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

// Fills pool->addresses (IP literal: at once; DNS name: cached for kResolveTtl).
awaitable<error_code> resolve_upstream(Worker* worker, UpstreamPool* pool,
                                       const config::Endpoint* ep) {
  const auto now = Clock::now();
  if (pool->addresses.empty() || now - pool->resolved_at > UpstreamPool::kResolveTtl) {
    error_code ec;
    const auto addr = asio::ip::make_address(ep->host, ec);
    if (!ec) {
      pool->addresses = {tcp::endpoint(addr, ep->port)};
      pool->resolved_at = Clock::time_point::max() - std::chrono::hours(24 * 365);
    } else {
      // DNS name: resolved off the worker thread by Asio's resolver service.
      tcp::resolver resolver(worker->io());
      auto [rec, results] =
          co_await resolver.async_resolve(ep->host, std::to_string(ep->port), kNoThrow);
      if (rec) co_return rec;
      pool->addresses.clear();
      for (const auto& r : results) pool->addresses.push_back(r.endpoint());
      pool->resolved_at = now;
      if (pool->addresses.empty()) co_return asio::error::host_not_found;
    }
  }
  co_return error_code{};
}

awaitable<error_code> connect_upstream(Worker* worker, UpstreamPool* pool,
                                       const config::Endpoint* ep, UpstreamConnection* conn,
                                       std::chrono::milliseconds timeout) {
  const error_code rec = co_await resolve_upstream(worker, pool, ep);
  if (rec) co_return rec;
  conn->stream.expires_after(timeout);
  auto [ec, connected] = co_await conn->stream.async_connect(pool->addresses, kNoThrow);
  if (!ec) {
    error_code ignored;
    conn->stream.socket().set_option(tcp::no_delay(true), ignored);
  }
  co_return ec;
}

enum class AttemptStatus { kOk, kRetry, kFail, kCancelled };

struct Attempt {
  AttemptStatus status = AttemptStatus::kFail;
  GatewayError error;
  std::unique_ptr<UpstreamConnection> conn;
  std::shared_ptr<H2UpstreamStream> h2;  // h2c pools: the stream instead of `conn`
};

// No response header within upstreamResponseTimeout: 504, not retried (the pod has the
// request; another attempt would run it twice).
Attempt response_timeout(metrics::GatewayMetrics& gm, const config::Endpoint& where,
                         const config::LimitsConfig& limits) {
  gm.upstream_errors("timeout").Increment();
  return Attempt{AttemptStatus::kFail,
                 GatewayError::gateway_timeout(
                     fmt::format("endpoint {} did not respond within {} ms", where.name,
                                 limits.upstream_response_timeout.count())),
                 nullptr};
}

bool is_reset(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == http::error::partial_message;
}

// One read from the upstream into its buffer. The end of the stream ends a close-delimited
// body (parser done), or is an error: end_of_stream before any byte of the response,
// partial_message after some.
// When the socket is known to be empty (conn->drained) it first waits for readiness, queued
// behind the connection's anchor (no syscall: a speculative read would fail with EAGAIN on
// nearly every response), then reads at once. After a read that returned less than it asked
// for the socket holds no more data, but the server's close may have come with it, and no
// readiness event would report that. Where the close is the end of the body (close-delimited,
// or the header is not complete yet) the next read therefore tries first; where the body has
// its own framing (Content-Length, chunked: SSE streams) a close there is an error, so the
// next read waits (no EAGAIN per streamed event) and the worker's close check looks at the
// socket (UpstreamConnection::check_close: within 100 ms, then at most once a second while the
// response lasts). The wait is under the connection's deadline (armed by the caller); its
// expiry reads as beast::error::timeout.
awaitable<error_code> read_response_bytes(UpstreamConnection* conn, ResponseParser& parser) {
  auto& socket = conn->stream.socket();
  if (conn->short_read) {
    conn->short_read = false;
    if (parser.is_header_done() && !parser.need_eof()) {
      conn->drained = true;
      conn->close_checks->schedule(conn->close_check);
    }
  }
  for (;;) {
    if (conn->drained && !conn->peer_closed) {
      auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, kNoThrow);
      if (wec && !conn->peer_closed)
        co_return conn->deadline.expired() ? error_code(beast::error::timeout) : wec;
    }
    const size_t room = std::max<size_t>(conn->buffer.capacity() - conn->buffer.size(), 4096);
    bool empty = false;
    error_code ec;
    const ssize_t n = recv_now(socket, conn->buffer, room, empty, ec);
    if (n > 0) {
      // Keep the anchor queued (the connection may go back to the pool after this read).
      if (empty) conn->anchor.arm(true);
      conn->drained = false;
      conn->short_read = empty;
      co_return error_code{};
    }
    if (ec) co_return ec;
    if (n < 0) {  // EAGAIN: empty, and not closed; wait
      conn->anchor.arm(true);
      conn->drained = true;
      conn->peer_closed = false;
      continue;
    }
    // The end of the stream.
    if (!parser.got_some()) co_return http::error::end_of_stream;
    parser.put_eof(ec);
    co_return ec;
  }
}

// One endpoint: an idle connection (or a fresh one if that turns out stale), write the request,
// read the response header. Leaves the parser holding the header on success.
awaitable<Attempt> attempt_endpoint(Worker* worker, EndpointRuntime* ep, const std::string* head,
                                    Request* msg, std::optional<ResponseParser>* parser,
                                    const config::LimitsConfig* limits) {
  auto& gm = worker->context().metrics;
  auto& pool = worker->upstream(ep->id);
  const auto& where = ep->endpoint;
  for (int round = 0; round < 2; ++round) {
    auto conn = round == 0 ? pool.take() : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      conn = std::make_unique<UpstreamConnection>(worker->io().get_executor(),
                                                  &worker->close_checks());
      const auto ec = co_await connect_upstream(worker, &pool, &where, conn.get(),
                                                limits->upstream_connect_timeout);
      if (ec) {
        if (co_await cancelled()) co_return Attempt{AttemptStatus::kCancelled, {}, nullptr};
        gm.upstream_errors(ec == beast::error::timeout ? "timeout" : "connect").Increment();
        pool.addresses.clear();  // re-resolve next time
        co_return Attempt{AttemptStatus::kRetry,
                          GatewayError::bad_gateway(
                              fmt::format("could not connect to endpoint {} ({}:{}): {}",
                                          where.name, where.host, where.port, ec.message())),
                          nullptr};
      }
    }
    ++conn->uses;
    // From here to the response header: upstreamResponseTimeout.
    conn->stream.expires_never();
    conn->deadline.arm_for(limits->upstream_response_timeout);
    // Head and body in one gathered write (Beast's serializer walks a buffer sequence per field),
    // at once when the socket takes it (the common case).
    const std::array<asio::const_buffer, 2> out = {
        asio::buffer(*head), asio::buffer(msg->body().data(), msg->body().size())};
    error_code wec;
    const size_t sent = send_now(conn->stream.socket(), out, wec);
    if (!wec && sent < asio::buffer_size(out)) {
      wec = co_await send_rest(conn->stream.socket(), out, sent);
      if (wec && conn->deadline.expired()) wec = beast::error::timeout;
    }
    if (wec) {
      conn->deadline.disarm();
      if (co_await cancelled()) co_return Attempt{AttemptStatus::kCancelled, {}, nullptr};
      if (reused) continue;  // the server closed the idle connection: try a fresh one
      gm.upstream_errors(wec == beast::error::timeout ? "timeout" : "reset").Increment();
      co_return Attempt{
          AttemptStatus::kRetry,
          GatewayError::bad_gateway(fmt::format("sending the request to endpoint {} failed: {}",
                                                where.name, wec.message())),
          nullptr};
    }
    for (;;) {
      // Its fields go where the request's went (the exchange's arena, or the heap).
      parser->emplace(std::piecewise_construct, std::make_tuple(),
                      std::make_tuple(msg->get_allocator()));
      (*parser)->header_limit(kUpstreamHeaderLimit);
      (*parser)->body_limit(std::numeric_limits<uint64_t>::max());
      error_code rec;
      while (!feed_parser(**parser, conn->buffer, true, rec) && !rec) {
        rec = co_await read_response_bytes(conn.get(), **parser);
      }
      if (rec) {
        if (co_await cancelled()) co_return Attempt{AttemptStatus::kCancelled, {}, nullptr};
        if (rec == beast::error::timeout) co_return response_timeout(gm, where, *limits);
        const bool nothing_received =
            is_reset(rec) && conn->buffer.size() == 0 && !(*parser)->got_some();
        if (nothing_received && reused) break;  // stale keep-alive connection: fresh one
        if (nothing_received || is_reset(rec)) {
          gm.upstream_errors("reset").Increment();
          co_return Attempt{AttemptStatus::kRetry,
                            GatewayError::bad_gateway(fmt::format(
                                "endpoint {} closed the connection before responding: {}",
                                where.name, rec.message())),
                            nullptr};
        }
        gm.upstream_errors("protocol").Increment();
        co_return Attempt{
            AttemptStatus::kFail,
            GatewayError::bad_gateway(fmt::format("endpoint {} sent a malformed response: {}",
                                                  where.name, rec.message())),
            nullptr};
      }
      const int status = (*parser)->get().result_int();
      if (status >= 100 && status < 200 && status != 101) continue;  // interim: skip
      conn->deadline.disarm();
      co_return Attempt{AttemptStatus::kOk, {}, std::move(conn)};
    }
  }
  gm.upstream_errors("reset").Increment();
  co_return Attempt{AttemptStatus::kRetry,
                    GatewayError::bad_gateway(fmt::format(
                        "endpoint {} closed the connection before responding", where.name)),
                    nullptr};
}

// One endpoint of an h2c pool: a stream on a session with a free slot (a new session when
// every session of the endpoint is at the pod's SETTINGS_MAX_CONCURRENT_STREAMS), then the
// response headers. A stream reset or a connection lost before the headers is retried on
// another endpoint, like a reset HTTP/1.1 connection.
awaitable<Attempt> attempt_h2_endpoint(Worker* worker, EndpointRuntime* ep, Request* msg,
                                       std::span<const H2FieldView> fields,
                                       const config::LimitsConfig* limits) {
  auto& gm = worker->context().metrics;
  auto& pool = worker->upstream(ep->id);
  const auto& where = ep->endpoint;
  auto session = pool.h2.find(limits->max_concurrent_streams);
  if (!session) {
    error_code ec = co_await resolve_upstream(worker, &pool, &where);
    if (!ec) {
      session = std::make_shared<H2UpstreamSession>(worker->io().get_executor());
      ec = co_await session->connect(pool.addresses, limits->upstream_connect_timeout);
    }
    if (ec) {
      if (co_await cancelled()) co_return Attempt{AttemptStatus::kCancelled, {}, nullptr};
      gm.upstream_errors(ec == beast::error::timeout ? "timeout" : "connect").Increment();
      pool.addresses.clear();
      co_return Attempt{
          AttemptStatus::kRetry,
          GatewayError::bad_gateway(fmt::format("could not connect to endpoint {} ({}:{}): {}",
                                                where.name, where.host, where.port, ec.message())),
          nullptr};
    }
    pool.h2.add(session);
  }
  // :authority is the client's Host, as HTTP/1.1 upstreams receive it.
  const auto host = (*msg)[http::field::host];
  auto stream = session->submit(
      *msg, fields,
      host.empty() ? fmt::format("{}:{}", where.host, where.port) : std::string(host));
  if (!stream) {
    gm.upstream_errors("protocol").Increment();
    co_return Attempt{AttemptStatus::kRetry,
                      GatewayError::bad_gateway(
                          fmt::format("could not open a stream to endpoint {}", where.name)),
                      nullptr};
  }
  const error_code ec = co_await stream->wait_headers(limits->upstream_response_timeout);
  if (ec) {
    if (co_await cancelled()) co_return Attempt{AttemptStatus::kCancelled, {}, nullptr};
    if (ec == beast::error::timeout) co_return response_timeout(gm, where, *limits);
    gm.upstream_errors("reset").Increment();
    co_return Attempt{AttemptStatus::kRetry,
                      GatewayError::bad_gateway(fmt::format(
                          "endpoint {} reset the stream before responding", where.name)),
                      nullptr};
  }
  co_return Attempt{AttemptStatus::kOk, {}, nullptr, std::move(stream)};
}

struct ReadResult {
  error_code ec;
  size_t bytes = 0;
};

// The response body: from an HTTP/1.1 connection's parser or from an h2c stream.
struct UpstreamBody {
  UpstreamConnection* conn = nullptr;
  ResponseParser* parser = nullptr;
  H2UpstreamStream* h2 = nullptr;
  bool done() const { return h2 != nullptr ? h2->done() : parser->is_done(); }
};

// Reads whatever body bytes are available now (at most `cap`), so SSE events are forwarded as
// they arrive rather than when a buffer fills.
awaitable<ReadResult> read_upstream_body(UpstreamBody* up, char* buf, size_t cap,
                                         std::chrono::milliseconds timeout) {
  if (up->h2 != nullptr) {
    auto [ec, n] = co_await up->h2->read_some(buf, cap, timeout);
    co_return ReadResult{ec, n};
  }
  auto& body = up->parser->get().body();
  body.data = buf;
  body.size = cap;
  body.more = true;
  error_code ec;
  // Bytes already buffered first; read only when they produced nothing.
  while (!feed_parser(*up->parser, up->conn->buffer, false, ec) && !ec && body.size == cap) {
    up->conn->deadline.arm_for(timeout);
    ec = co_await read_response_bytes(up->conn, *up->parser);
    up->conn->deadline.disarm();
    if (ec) break;
  }
  co_return ReadResult{ec, cap - body.size};
}

// An upstream that broke or stalled after its response header (no retry is possible then).
void count_upstream_failure(Worker* worker, std::string_view model, std::string_view target,
                            const error_code& ec) {
  worker->context()
      .metrics.upstream_errors(ec == beast::error::timeout ? "timeout" : "reset")
      .Increment();
  worker->metrics().request_error(model, target, "upstream_reset").Increment();
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One view per endpoint of the pool, id = its index in pool.endpoints. Metrics come from the
// scraper's snapshot when it was built for this state's generation (else none yet: a reload
// happened less than one scrape interval ago).
void build_views(const PoolRuntime& pool, size_t pool_index, uint64_t generation,
                 const MetricsSnapshot* samples, EndpointViews* out) {
  out->clear();
  const bool aligned = samples != nullptr && samples->generation == generation &&
                       pool_index < samples->pools.size() &&
                       samples->pools[pool_index].size() == pool.endpoints.size();
  const auto now = Clock::now();
  for (size_t i = 0; i < pool.endpoints.size(); ++i) {
    const EndpointRuntime& ep = *pool.endpoints[i];
    routing::EndpointView v;
    v.id = static_cast<uint32_t>(i);
    v.key = ep.id;
    v.in_flight = ep.in_flight.load(std::memory_order_relaxed);
    v.dispatched_since_scrape = ep.dispatched_since_scrape.load(std::memory_order_relaxed);
    v.prompt_bytes_since_scrape = ep.prompt_bytes_since_scrape.load(std::memory_order_relaxed);
    if (const EndpointSample* s = aligned ? samples->pools[pool_index][i].get() : nullptr) {
      if (s->scraped_at != Clock::time_point{}) {
        v.metrics = &s->metrics;
        v.metrics_age = now - s->scraped_at;
      }
      // Unreachable (its metrics endpoint failed repeatedly): not ready, like a pod that
      // fails its readiness probe.
      v.ready = s->ready();
    }
    out->push_back(v);
  }
}

}  // namespace

awaitable<bool> send_error(Downstream* downstream, const GatewayError& error,
                           const std::string& request_id, uint32_t retry_after_seconds) {
  HeaderList headers;
  headers.emplace_back("content-type", "application/json");
  headers.emplace_back("x-request-id", request_id);
  if (retry_after_seconds > 0)
    headers.emplace_back("retry-after", std::to_string(retry_after_seconds));
  if (error.status == 405) headers.emplace_back("allow", "POST");
  co_return co_await downstream->send_response(error.status, std::move(headers), error_body(error));
}

awaitable<void> run_pipeline(Worker* worker, DownstreamRequest* request, Downstream* downstream) {
  co_await asio::this_coro::throw_if_cancelled(false);
  const RuntimeStatePtr state = worker->context().state.load();
  worker->sync_upstreams(*state);
  const auto& limits = state->config->proxy.limits;
  auto& gm = worker->context().metrics;
  auto& msg = request->msg;

  std::string request_id(msg["x-request-id"]);
  if (request_id.empty() || request_id.size() > 128) request_id = worker->new_request_id();

  const auto path = path_of(msg.target());
  const bool routed = is_routed_path(path);
  if (path == "/v1/models") {
    if (msg.method() != http::verb::get) {
      gm.http_requests(405).Increment();
      // Not send_error(): its Allow is POST, the routed paths' method.
      HeaderList headers;
      headers.emplace_back("content-type", "application/json");
      headers.emplace_back("x-request-id", request_id);
      headers.emplace_back("allow", "GET");
      co_await downstream->send_response(
          405, std::move(headers),
          error_body(GatewayError::method_not_allowed(msg.method_string(), path)));
      co_return;
    }
    gm.http_requests(200).Increment();
    HeaderList headers;
    headers.emplace_back("content-type", "application/json");
    headers.emplace_back("x-request-id", request_id);
    co_await downstream->send_response(200, std::move(headers), state->models_json);
    co_return;
  }
  if (msg.method() != http::verb::post) {
    const auto err = routed ? GatewayError::method_not_allowed(msg.method_string(), path)
                            : GatewayError::not_found(path);
    gm.http_requests(err.status).Increment();
    co_await send_error(downstream, err, request_id);
    co_return;
  }

  auto& body = msg.body();
  const RequestInfo info = parse_request(body, path);
  if (!info.ok) {
    const auto err = routed ? GatewayError::bad_request(info.error, info.error_param)
                            : GatewayError::not_found(path);
    gm.http_requests(err.status).Increment();
    co_await send_error(downstream, err, request_id);
    co_return;
  }

  const auto resolution =
      state->resolver.resolve(info.model, msg["x-gateway-inference-objective"], worker->rng());
  if (resolution.status != routing::Resolution::Status::kOk) {
    gm.http_requests(404).Increment();
    worker->metrics().request_error(info.model, "", "model_not_found").Increment();
    co_await send_error(downstream, GatewayError::model_not_found(info.model), request_id);
    co_return;
  }
  const std::string& target = resolution.target_model;
  const PoolRuntime* pool = state->find_pool(resolution.pool);
  if (pool == nullptr || pool->endpoints.empty()) {
    gm.http_requests(503).Increment();
    worker->metrics().request_error(info.model, target, "no_endpoints").Increment();
    co_await send_error(downstream,
                        GatewayError::unavailable(fmt::format(
                            "inference pool {} has no ready endpoint", resolution.pool)),
                        request_id);
    co_return;
  }

  const auto& mm = worker->metrics().model(info.model, target, resolution.priority);
  mm.requests->Increment();
  RunningGauge running(mm.running);

  // Rewrite the model in place; keep the prompt span valid for the picker.
  size_t prompt_offset = info.prompt_offset;
  size_t tools_offset = info.tools_offset;
  if (target != info.model) {
    const auto before = body.size();
    rewrite_request_model(body, info, target);
    // Spans after the model token moved by the size difference (either sign).
    const auto shift = [&](size_t& offset) {
      if (offset > info.model_offset) offset = offset + body.size() - before;
    };
    shift(prompt_offset);
    shift(tools_offset);
  }
  routing::RequestFeatures features;
  features.model = target;
  features.priority = resolution.priority;
  if (info.prompt_length > 0 && prompt_offset + info.prompt_length <= body.size())
    features.prompt = std::string_view(body).substr(prompt_offset, info.prompt_length);
  if (info.tools_length > 0 && tools_offset + info.tools_length <= body.size())
    features.tools = std::string_view(body).substr(tools_offset, info.tools_length);
  const bool h2c = pool->pool->app_protocol == config::AppProtocol::kH2c;
  std::string upstream_head;        // HTTP/1.1 upstreams: the request head, written with the body
  UpstreamFieldScratch h2_scratch;  // h2c upstreams: the fields, as views
  std::vector<H2FieldView> h2_fields;
  if (h2c) {
    for_each_upstream_field(msg, *request, request_id, h2_scratch,
                            [&h2_fields](std::string_view name, std::string_view value) {
                              h2_fields.emplace_back(name, value);
                            });
  } else {
    upstream_head.reserve(msg.target().size() + 512);
    serialize_upstream_head(msg, *request, request_id, upstream_head);
  }

  // What the scheduler sees of the pool: live counters plus the scraper's latest metrics
  // (kept alive by `samples` for the whole request).
  const size_t pool_index = static_cast<size_t>(pool - state->pools.data());
  const auto& scrape_cfg = state->config->proxy.model_server_metrics;
  const auto& sched_cfg = state->config->proxy.scheduler;
  const routing::Scheduler& scheduler = *pool->scheduler;
  MetricsSnapshotPtr samples = worker->context().engine_metrics.load(std::memory_order_acquire);
  EndpointViews all_views;
  build_views(*pool, pool_index, state->generation, samples.get(), &all_views);

  // Admission (SPEC §6): while the pool is saturated, sheddable requests get 429 and, with flow
  // control on, the others wait in priority order for capacity.
  if (scrape_cfg.enabled && scheduler.saturation_detector().saturated(all_views)) {
    if (resolution.priority < 0) {
      gm.http_requests(429).Increment();
      worker->metrics().shed(pool->key, "saturated").Increment();
      worker->metrics().request_error(info.model, target, "pool_saturated").Increment();
      co_await send_error(
          downstream,
          GatewayError::too_many_requests(
              "pool_saturated", fmt::format("inference pool {} is saturated and the request is "
                                            "sheddable (priority {})",
                                            pool->key, resolution.priority)),
          request_id, sched_cfg.retry_after_seconds);
      co_return;
    }
    if (sched_cfg.flow_control.enabled) {
      const FlowOutcome outcome = co_await worker->wait_for_capacity(
          pool->key, sched_cfg.flow_control, resolution.priority, body.size());
      if (outcome == FlowOutcome::kCancelled) {
        gm.client_aborts().Increment();
        co_return;
      }
      if (outcome != FlowOutcome::kAdmitted) {
        const bool timeout = outcome == FlowOutcome::kExpired;
        worker->metrics().shed(pool->key, timeout ? "queue_timeout" : "queue_full").Increment();
        const auto err =
            timeout ? GatewayError::unavailable(fmt::format(
                          "inference pool {} stayed saturated for {} ms while the request waited",
                          pool->key, sched_cfg.flow_control.ttl.count()))
                    : GatewayError::too_many_requests(
                          "queue_full",
                          fmt::format("inference pool {} is saturated and its queue is full",
                                      pool->key));
        gm.http_requests(err.status).Increment();
        worker->metrics().request_error(info.model, target, err.code).Increment();
        co_await send_error(downstream, err, request_id, sched_cfg.retry_after_seconds);
        co_return;
      }
      samples = worker->context().engine_metrics.load(std::memory_order_acquire);
      build_views(*pool, pool_index, state->generation, samples.get(), &all_views);
    }
  }

  // Debug mode: a trusted client asks for the decision (config opt-in).
  std::optional<routing::DecisionTrace> trace;
  if (sched_cfg.debug_header && msg["x-infergate-debug"] == "scheduling") trace.emplace();

  // Pick, connect, send; retry on another endpoint until a response header arrives.
  routing::SchedulingState scheduling;
  EndpointViews views;
  std::vector<uint64_t> tried;
  GatewayError last_error = GatewayError::bad_gateway("no endpoint could be reached");
  std::optional<ResponseParser> parser;
  std::unique_ptr<UpstreamConnection> conn;
  std::shared_ptr<H2UpstreamStream> h2;
  EndpointRuntime* chosen = nullptr;
  InFlight in_flight;
  const uint32_t max_attempts = 1 + limits.max_retries;
  for (uint32_t attempt = 0; attempt < max_attempts; ++attempt) {
    views.clear();
    for (auto v : all_views) {
      const EndpointRuntime& ep = *pool->endpoints[v.id];
      if (std::find(tried.begin(), tried.end(), ep.id) != tried.end()) continue;
      v.in_flight = ep.in_flight.load(std::memory_order_relaxed);
      views.push_back(v);
    }
    if (views.empty()) break;
    if (trace) trace->clear();
    auto decision =
        scheduler.schedule(views, features, scheduling, worker->rng(), trace ? &*trace : nullptr);
    worker->metrics()
        .scheduling_decision(pool->key, routing::to_string(decision.reason))
        .Increment();
    if (decision.status == routing::DecisionStatus::kShed) {
      gm.http_requests(429).Increment();
      worker->metrics().shed(pool->key, "scheduler").Increment();
      co_await send_error(
          downstream,
          GatewayError::too_many_requests(
              "pool_saturated", fmt::format("inference pool {} has no capacity for a request of "
                                            "priority {}",
                                            pool->key, resolution.priority)),
          request_id, sched_cfg.retry_after_seconds);
      co_return;
    }
    if (decision.status == routing::DecisionStatus::kNoEndpoint) {
      // Nothing is ready. FailOpen still tries an endpoint (as GIE's gateway falls back to
      // any endpoint when the picker fails); FailClose answers 503.
      if (pool->pool->failure_mode != config::FailureMode::kFailOpen) {
        if (attempt == 0)
          last_error = GatewayError::unavailable(
              fmt::format("inference pool {} has no ready endpoint", pool->key));
        break;
      }
      decision.index = worker->rng().below(views.size());
    }
    const routing::EndpointView& view = views[decision.index];
    EndpointRuntime* ep = pool->endpoints[view.id].get();
    tried.push_back(ep->id);
    scheduler.record_dispatch(view, features, scheduling);
    ep->dispatched_since_scrape.fetch_add(1, std::memory_order_relaxed);
    ep->prompt_bytes_since_scrape.fetch_add(static_cast<int64_t>(features.prompt.size()),
                                            std::memory_order_relaxed);
    if (attempt > 0) gm.upstream_retries().Increment();
    in_flight.acquire(ep);
    Attempt result;
    if (h2c) {
      result = co_await attempt_h2_endpoint(worker, ep, &msg, h2_fields, &limits);
    } else {
      result = co_await attempt_endpoint(worker, ep, &upstream_head, &msg, &parser, &limits);
    }
    if (result.status == AttemptStatus::kOk) {
      chosen = ep;
      conn = std::move(result.conn);
      h2 = std::move(result.h2);
      break;
    }
    in_flight.release();
    if (result.status == AttemptStatus::kCancelled) {
      gm.client_aborts().Increment();
      co_return;  // the client is gone; nothing to answer
    }
    ep->failures_total.fetch_add(1, std::memory_order_relaxed);
    log::debug("request {} endpoint {} failed: {}", request_id, ep->endpoint.name,
               result.error.message);
    last_error = std::move(result.error);
    if (result.status == AttemptStatus::kFail) break;
  }
  if (chosen == nullptr) {
    gm.http_requests(last_error.status).Increment();
    worker->metrics().request_error(info.model, target, last_error.code).Increment();
    co_await send_error(downstream, last_error, request_id);
    co_return;
  }

  // Relay the response.
  ResponseParser::value_type h2_head;  // an h2c response's status and headers, for the relay
  if (h2) {
    h2_head.result(static_cast<unsigned>(h2->status));
    for (const auto& [name, value] : h2->headers) h2_head.insert(name, value);
  }
  const auto& res = h2 ? h2_head : parser->get();
  UpstreamBody upstream_body{conn.get(), h2 ? nullptr : &*parser, h2.get()};
  const int status = res.result_int();
  gm.http_requests(status).Increment();
  HeaderList headers = response_headers(res, request_id);
  if (trace) {
    headers.emplace_back("x-infergate-scheduling", trace->to_json([&](uint32_t id) {
      return std::string_view(pool->endpoints[id]->endpoint.name);
    }));
  }
  const bool success = status / 100 == 2;
  const std::string_view content_type = res[http::field::content_type];
  const bool sse = success && starts_with_icase(content_type, "text/event-stream");
  const bool json = success && contains_icase(content_type, "json");
  std::optional<uint64_t> content_length;
  if (h2) {
    uint64_t n = 0;
    const auto cl = res[http::field::content_length];
    const auto [p, cec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
    if (!cl.empty() && cec == std::errc() && p == cl.data() + cl.size()) content_length = n;
  } else if (const auto cl = parser->content_length()) {
    content_length = *cl;
  }
  const std::string client_model = target != info.model ? info.model : std::string();
  bool buffered =
      json && !sse && (!content_length || *content_length <= limits.max_response_body_bytes);
  if (!success)
    worker->metrics().request_error(info.model, target, std::to_string(status)).Increment();

  // Streamed bodies are relayed through `chunk` (allocated only for them: it would make every
  // request's coroutine frame 16 KiB larger); buffered ones are read straight into `out`.
  std::unique_ptr<char[]> chunk;
  Usage usage;
  bool first_byte = true;
  auto note_first_byte = [&] {
    if (!first_byte) return;
    first_byte = false;
    mm.ttft->Observe(seconds_since(request->received_at));
  };

  std::string out;
  if (buffered) {
    // Read space: the announced length (one read when it is all there), else a relay chunk.
    const size_t step = content_length ? std::max<size_t>(*content_length, 1) : kRelayChunk;
    out.reserve(step + kJsonPadding);  // rewrite_response_body parses it in place
    while (!upstream_body.done()) {
      const size_t before = out.size();
      out.resize(before + step);
      const auto r = co_await read_upstream_body(&upstream_body, out.data() + before, step,
                                                 limits.upstream_idle_timeout);
      out.resize(before + r.bytes);
      if (r.ec) {
        if (co_await cancelled()) {
          gm.client_aborts().Increment();
          co_return;
        }
        count_upstream_failure(worker, info.model, target, r.ec);
        const auto err =
            r.ec == beast::error::timeout
                ? GatewayError::gateway_timeout("the endpoint stopped sending the response")
                : GatewayError::bad_gateway(fmt::format(
                      "the endpoint failed while sending the response: {}", r.ec.message()));
        co_await send_error(downstream, err, request_id);
        co_return;
      }
      if (out.size() > limits.max_response_body_bytes) {
        buffered = false;  // too large to rewrite: stream the rest through unchanged
        break;
      }
    }
    if (buffered) {
      rewrite_response_body(out, client_model, &usage);
      note_first_byte();
      if (!co_await downstream->send_response(status, std::move(headers), std::move(out))) {
        gm.client_aborts().Increment();
        co_return;
      }
    }
  }
  if (!buffered) {
    const bool keep_length = !sse && content_length.has_value();
    if (!co_await downstream->send_head(status, std::move(headers),
                                        keep_length ? content_length : std::nullopt)) {
      gm.client_aborts().Increment();
      co_return;
    }
    if (!out.empty()) {  // a JSON body that outgrew the rewrite limit
      note_first_byte();
      if (!co_await downstream->send_data(out)) {
        gm.client_aborts().Increment();
        co_return;
      }
    }
    SseRewriter rewriter(sse ? client_model : std::string());
    std::string events;
    if (!upstream_body.done()) chunk = std::make_unique_for_overwrite<char[]>(kRelayChunk);
    while (!upstream_body.done()) {
      const auto r = co_await read_upstream_body(&upstream_body, chunk.get(), kRelayChunk,
                                                 limits.upstream_idle_timeout);
      if (r.ec) {
        if (co_await cancelled()) {
          gm.client_aborts().Increment();
          co_return;
        }
        count_upstream_failure(worker, info.model, target, r.ec);
        log::info("request {} upstream {} failed mid-response: {}", request_id,
                  chosen->endpoint.name, r.ec.message());
        downstream->abort();
        co_return;
      }
      if (r.bytes == 0) continue;
      std::string_view data(chunk.get(), r.bytes);
      if (sse) {
        events.clear();
        rewriter.feed(data, events);
        if (events.empty()) continue;
        data = events;
      }
      note_first_byte();
      if (!co_await downstream->send_data(data)) {
        gm.client_aborts().Increment();
        co_return;
      }
    }
    if (sse) {
      events.clear();
      rewriter.finish(events);
      if (!events.empty() && !co_await downstream->send_data(events)) {
        gm.client_aborts().Increment();
        co_return;
      }
      usage = rewriter.usage();
    }
    if (!co_await downstream->finish()) {
      gm.client_aborts().Increment();
      co_return;
    }
  }

  // Done: recycle the upstream connection and record what happened.
  if (!h2 && parser->keep_alive() && worker->endpoint_live(chosen->id)) {
    worker->upstream(chosen->id).give_back(std::move(conn), limits.upstream_max_idle_per_endpoint);
  }
  mm.duration->Observe(seconds_since(request->received_at));
  if (usage.prompt_tokens >= 0) mm.input_tokens->Observe(static_cast<double>(usage.prompt_tokens));
  if (usage.completion_tokens >= 0)
    mm.output_tokens->Observe(static_cast<double>(usage.completion_tokens));
}

}  // namespace infergate::proxy
