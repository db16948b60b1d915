#include "proxy/http1_session.h"

#include <sys/socket.h>
#include <boost/beast/ssl.hpp>

#include <array>
#include <cerrno>
#include <charconv>
#include <memory>
#include <memory_resource>
#include <optional>
#include <type_traits>

#include "common/log.h"
#include "proxy/errors.h"
#include "proxy/exchange.h"
#include "proxy/feed_parser.h"
#include "proxy/lazy_deadline.h"
#include "proxy/openai_body.h"
#include "proxy/pipeline.h"
#include "proxy/read_anchor.h"
#include "proxy/socket_io.h"
#include "proxy/worker.h"

namespace infergate::proxy {
namespace {

using Clock = std::chrono::steady_clock;

template <typename Stream>
beast::tcp_stream& tcp_of(Stream& s) {
  return beast::get_lowest_layer(s);
}

// Downstream over one HTTP/1.1 connection. Writes are sequential (one in flight) and each has
// the write timeout; a failed write marks the connection broken.
template <typename Stream>
class H1Downstream final : public Downstream {
 public:
  // `deadline`: the connection's (plain TCP; null on TLS, where the stream's own timeout applies).
  H1Downstream(Stream& stream, std::string& head, LazyDeadline* deadline,
               std::chrono::milliseconds write_timeout, bool keep_alive, unsigned version)
      : stream_(stream),
        head_(head),
        deadline_(deadline),
        write_timeout_(write_timeout),
        keep_alive_(keep_alive),
        version_(version) {}

  awaitable<bool> send_response(int status, HeaderList headers, std::string body) override {
    // 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6).
    const bool bodiless = status / 100 == 1 || status == 204 || status == 304;
    if (bodiless) body.clear();
    write_head(status, headers, bodiless ? std::optional<uint64_t>() : body.size());
    const std::array<asio::const_buffer, 2> bufs = {asio::buffer(head_),
                                                    asio::buffer(body.data(), body.size())};
    co_return co_await write(bufs);
  }

  awaitable<bool> send_head(int status, HeaderList headers,
                            std::optional<uint64_t> content_length) override {
    if (!content_length) {
      if (version_ >= 11)
        chunked_ = true;
      else
        keep_alive_ = false;  // HTTP/1.0: the body ends when the connection closes
    }
    write_head(status, headers, content_length);
    co_return co_await write(asio::buffer(head_));
  }

  awaitable<bool> send_data(std::string_view data) override {
    if (data.empty()) co_return true;
    if (!chunked_) co_return co_await write(asio::buffer(data.data(), data.size()));
    // One gathered write: chunk size line, data, CRLF.
    char size_line[24];
    const auto r = std::to_chars(size_line, size_line + sizeof size_line - 2, data.size(), 16);
    char* end = r.ptr;
    *end++ = '\r';
    *end++ = '\n';
    const std::array<asio::const_buffer, 3> bufs = {
        asio::buffer(size_line, static_cast<size_t>(end - size_line)),
        asio::buffer(data.data(), data.size()), asio::buffer("\r\n", 2)};
    co_return co_await write(bufs);
  }

  awaitable<bool> finish() override {
    if (!chunked_) co_return true;
    static constexpr std::string_view kLast = "0\r\n\r\n";
    co_return co_await write(asio::buffer(kLast.data(), kLast.size()));
  }

  void abort() override { broken_ = true; }

  // After the exchange: may the connection carry another request?
  bool reusable() const { return keep_alive_ && !broken_; }

 private:
  // One write under the write timeout. Plain TCP: on the socket itself under the connection's
  // lazy deadline (a client that stops reading for write_timeout_ has its write cancelled);
  // TLS: through the stream, whose own timeout applies.
  template <typename Buffers>
  awaitable<bool> write(const Buffers& bufs) {
    error_code ec;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      // At once when the socket buffer takes it all (the common case), else the rest under the
      // deadline.
      const size_t sent = send_now(stream_.socket(), bufs, ec);
      if (!ec && sent < asio::buffer_size(bufs)) {
        deadline_->arm_for(write_timeout_);
        ec = co_await send_rest(stream_.socket(), bufs, sent);
        deadline_->disarm();
      }
    } else {
      tcp_of(stream_).expires_after(write_timeout_);
      std::tie(ec, std::ignore) = co_await asio::async_write(stream_, bufs, kNoThrow);
    }
    if (ec) broken_ = true;
    co_return !ec;
  }

  // The status line and header block, serialised into head_ (its capacity is the session's,
  // reused from request to request). Framing: Content-Length when known, else chunked
  // (HTTP/1.1; chunked_ is set by the caller) or close-delimited (HTTP/1.0). Connection as
  // Beast's keep_alive() writes it: "close" to end an HTTP/1.1 connection, "keep-alive" to keep
  // an HTTP/1.0 one.
  void write_head(int status, const HeaderList& headers, std::optional<uint64_t> content_length) {
    std::string& h = head_;
    h.clear();
    h.append(version_ >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ");
    char num[24];
    auto r = std::to_chars(num, num + sizeof num, status);
    h.append(num, r.ptr);
    h.push_back(' ');
    const auto reason = http::obsolete_reason(static_cast<http::status>(status));
    h.append(reason.data(), reason.size());
    h.append("\r\n");
    for (const auto& [name, value] : headers) {
      h.append(name);
      h.append(": ");
      h.append(value);
      h.append("\r\n");
    }
    if (content_length) {
      r = std::to_chars(num, num + sizeof num, *content_length);
      h.append("Content-Length: ");
      h.append(num, r.ptr);
      h.append("\r\n");
    } else if (chunked_) {
      h.append("Transfer-Encoding: chunked\r\n");
    }
    if (version_ >= 11 && !keep_alive_) h.append("Connection: close\r\n");
    if (version_ < 11 && keep_alive_) h.append("Connection: keep-alive\r\n");
    h.append("\r\n");
  }

  Stream& stream_;
  std::string& head_;
  LazyDeadline* deadline_;
  std::chrono::milliseconds write_timeout_;
  bool keep_alive_;
  unsigned version_;
  bool chunked_ = false;
  bool broken_ = false;
};

// TLS: watches the client while a request is being proxied. Completes when the client
// closes or resets (the caller then cancels the pipeline). Pipelined bytes that arrive in the
// meantime are kept in `buffer` for the next request, up to `limit`; past that it stops
// reading (TCP backpressure) and just waits to be cancelled.
template <typename Stream>
awaitable<void> watch_client(Stream* stream, ClientBuffer* buffer, size_t limit) {
  co_await asio::this_coro::throw_if_cancelled(false);
  for (;;) {
    // A read that completed with data in the same turn as the cancellation (the client sent
    // its next request right after the response) must not start another read: the `||` in
    // the session waits for this coroutine, and nothing would cancel the new read.
    const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return;
    if (buffer->size() >= limit) {
      asio::steady_timer park(tcp_of(*stream).get_executor(), Clock::time_point::max());
      co_await park.async_wait(kNoThrow);
      co_return;
    }
    // TLS reads go through the stream; the writes' timeouts must not apply to this read.
    tcp_of(*stream).expires_never();
    auto [ec, n] = co_await stream->async_read_some(buffer->prepare(4096), kNoThrow);
    if (ec) co_return;  // closed, reset, or cancelled because the exchange finished
    buffer->commit(n);
  }
}

// The plain-TCP client watcher: while a request is proxied, a client that closes or resets
// cancels the exchange (through the connection's cancellation signal), and bytes the client
// pipelines meanwhile are kept in the session's buffer, up to `limit` (then it stops reading:
// TCP backpressure). It is the socket's ReadAnchor: a readiness wait that stays queued from one
// request to the next, armed without a syscall right after the session's read of a request
// found the socket empty. Between requests the session's own wait for the next one queues
// behind it (again no syscall) and both complete on the same event; an inactive watcher leaves
// the bytes to the session.
// The one close no event reports is one that came together with the request (ReadAnchor): for
// it the worker's close check looks at the socket (a peek) within kCloseCheckInterval, once per
// interval however many requests the connection carries.
// Lives in the session's frame; a wait still queued when the session ends completes without
// calling back.
struct ClientWatch {
  ClientWatch(Worker& w, Worker::SessionEntry& e, tcp::socket& s, ClientBuffer& b)
      : worker(w),
        entry(e),
        socket(s),
        buffer(b),
        anchor(s, &ClientWatch::fired, this),
        close_check(&ClientWatch::check_close, this) {}
  ClientWatch(const ClientWatch&) = delete;
  ClientWatch& operator=(const ClientWatch&) = delete;
  Worker& worker;
  Worker::SessionEntry& entry;
  tcp::socket& socket;
  ClientBuffer& buffer;
  size_t limit = 0;
  bool active = false;  // a request is being proxied
  bool gone = false;    // the client closed or reset during the exchange
  ReadAnchor anchor;
  CloseCheck close_check;

  // Queues the wait if none is pending. `drained`: the socket was just read empty, in this
  // handler (ReadAnchor::arm); a close may have come with those bytes, so the close check is
  // asked for.
  void arm(bool drained) {
    if (gone || buffer.size() >= limit) return;
    anchor.arm(drained);
    if (drained) worker.close_checks().schedule(close_check);
  }

  // The client closed or reset.
  void client_gone() {
    if (active) {
      gone = true;
      entry.cancel.emit(asio::cancellation_type::terminal);
    } else {
      error_code ignored;
      socket.cancel(ignored);  // the session's pending wait or read ends; it closes
    }
  }

  static void fired(void* self, const error_code& ec) {
    auto* w = static_cast<ClientWatch*>(self);
    if (ec || !w->active) return;  // cancelled or closed; or the session's own read takes it
    bool drained = false;
    error_code rec;
    const ssize_t n = recv_now(w->socket, w->buffer, 4096, drained, rec);
    if (n == 0 || rec) {
      w->client_gone();
      return;
    }
    w->arm(drained);
  }

  static void check_close(void* self) {
    auto* w = static_cast<ClientWatch*>(self);
    if (peek_now(w->socket) == PeekResult::kClosed) w->client_gone();
  }
};

// Early errors (before a request reaches the pipeline) close the connection afterwards.
template <typename Stream>
awaitable<void> reply_and_close(Stream* stream, Worker* worker, LazyDeadline* deadline,
                                const GatewayError& e, unsigned version,
                                std::chrono::milliseconds timeout) {
  worker->context().metrics.http_requests(e.status).Increment();
  std::string head;
  H1Downstream<Stream> down(*stream, head, deadline, timeout, false, version);
  co_await send_error(&down, e, worker->new_request_id());
}

// Reads the request's headers (header_only) or the rest of it under a deadline, without closing
// the socket when the deadline passes: beast::tcp_stream's own timeout closes it, which would
// make the 408 impossible to send. The timer cancels the socket's pending I/O instead, and the
// read's error becomes beast::error::timeout.
template <typename Stream>
awaitable<error_code> read_request_part(Stream* stream, ClientBuffer* buffer, RequestParser* parser,
                                        bool header_only, std::chrono::milliseconds timeout) {
  tcp_of(*stream).expires_never();
  asio::steady_timer deadline(tcp_of(*stream).get_executor());
  deadline.expires_after(timeout);
  auto armed = std::make_shared<bool>(true);
  auto fired = std::make_shared<bool>(false);
  beast::tcp_stream* tcp = &tcp_of(*stream);
  deadline.async_wait([tcp, armed, fired](const error_code& ec) {
    if (ec || !*armed) return;
    *fired = true;
    error_code ignored;
    tcp->socket().cancel(ignored);
  });
  error_code ec;
  if (header_only) {
    std::tie(ec, std::ignore) =
        co_await http::async_read_header(*stream, *buffer, *parser, kNoThrow);
  } else {
    std::tie(ec, std::ignore) = co_await http::async_read(*stream, *buffer, *parser, kNoThrow);
  }
  *armed = false;
  deadline.cancel();
  if (ec && *fired) ec = beast::error::timeout;
  co_return ec;
}

// The answer to a request that could not be read (`body`: while reading its body), or none when
// the client just went away (closed, reset, or the read was cancelled).
std::optional<GatewayError> unreadable_request_answer(const error_code& ec, bool body,
                                                      const config::LimitsConfig& limits) {
  // Beast checks an announced Content-Length against the limit with the headers.
  if (ec == http::error::body_limit)
    return GatewayError::payload_too_large(limits.max_request_body_bytes);
  if (ec == http::error::header_limit)
    return GatewayError::headers_too_large(limits.max_request_header_bytes);
  if (ec == beast::error::timeout) return GatewayError::request_timeout();
  if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::operation_aborted)
    return std::nullopt;
  return GatewayError::bad_request(
      fmt::format("malformed HTTP request{}: {}", body ? " body" : "", ec.message()));
}

// How an exchange left the connection.
enum class ExchangeEnd {
  kKeepAlive,    // the next request may follow
  kClose,        // close now
  kLingerClose,  // answered before reading everything the client sent: lingering close
};

// A request that cannot be read, or is refused before it is read whole: answered (`answer`),
// then the connection closes with a lingering close (client bytes are left unread); no answer
// when the client just went away.
template <typename Stream>
awaitable<ExchangeEnd> refuse_request(Stream* stream, Worker* worker, LazyDeadline* deadline,
                                      std::optional<GatewayError> answer, unsigned version,
                                      std::chrono::milliseconds timeout) {
  if (!answer) co_return ExchangeEnd::kClose;
  co_await reply_and_close(stream, worker, deadline, *answer, version, timeout);
  co_return ExchangeEnd::kLingerClose;
}

// One request on the connection, from its first bytes (in `buffer`) to the end of the response.
// Its own coroutine, so that the per-exchange state (parser, header arena, request, response
// adapter) is not part of the idle connection's frame.
template <typename Stream>
awaitable<ExchangeEnd> run_exchange(Worker* worker, Stream& stream, ClientBuffer& buffer,
                                    std::string& head, LazyDeadline* deadline, ClientWatch* watch,
                                    const std::string& client_address, bool tls,
                                    const config::LimitsConfig& limits) {
  co_await asio::this_coro::throw_if_cancelled(false);
  // The exchange's header fields (request and upstream response) live in an arena whose
  // first block comes from the worker's pool; it outlives the parser and the request.
  std::pmr::monotonic_buffer_resource arena(BlockPool::kArenaInitialSize, &worker->header_blocks());
  RequestParser parser(std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(FieldsAllocator(&arena)));
  parser.header_limit(limits.max_request_header_bytes);
  parser.body_limit(limits.max_request_body_bytes);
  error_code hec;
  if (!feed_parser(parser, buffer, true, hec) && !hec)
    hec = co_await read_request_part(&stream, &buffer, &parser, true, limits.header_timeout);
  if (hec) {
    // The version is known for a body over the limit (found with the headers); else 1.1.
    co_return co_await refuse_request(
        &stream, worker, deadline, unreadable_request_answer(hec, false, limits),
        hec == http::error::body_limit ? parser.get().version() : 11, limits.idle_timeout);
  }
  const unsigned version = parser.get().version();
  if (const auto cl = parser.content_length(); cl && *cl > limits.max_request_body_bytes)
    co_return co_await refuse_request(
        &stream, worker, deadline, GatewayError::payload_too_large(limits.max_request_body_bytes),
        version, limits.idle_timeout);
  if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    tcp_of(stream).expires_after(limits.idle_timeout);
    auto [cec, cn] = co_await asio::async_write(
        stream, asio::buffer(kContinue.data(), kContinue.size()), kNoThrow);
    if (cec) co_return ExchangeEnd::kClose;
  }
  if (!parser.is_done()) {
    // Room for simdjson's padding up front, so parsing the body does not copy it.
    if (const auto cl = parser.content_length())
      parser.get().body().reserve(static_cast<size_t>(*cl) + kJsonPadding);
    error_code bec;
    if (!feed_parser(parser, buffer, false, bec) && !bec)
      bec = co_await read_request_part(&stream, &buffer, &parser, false, limits.body_timeout);
    if (bec)
      co_return co_await refuse_request(&stream, worker, deadline,
                                        unreadable_request_answer(bec, true, limits), version,
                                        limits.idle_timeout);
  }
  tcp_of(stream).expires_never();

  // Move-constructed: assigning would copy every field to the heap (the allocators differ).
  DownstreamRequest request{.msg = parser.release(),
                            .fields_allocator = FieldsAllocator(&arena),
                            .client_address = client_address,
                            .tls = tls,
                            .received_at = Clock::now()};
  const bool keep_alive = request.msg.keep_alive() && !worker->context().draining.load();
  H1Downstream<Stream> downstream(stream, head, deadline, limits.idle_timeout, keep_alive, version);

  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    watch->limit = limits.max_request_header_bytes;
    watch->active = true;
    watch->arm(false);  // usually pending already (armed when the request was read)
    co_await run_pipeline(worker, &request, &downstream);
    watch->active = false;
    if (watch->gone) {
      log::debug("client {} went away mid-request", client_address);
      co_return ExchangeEnd::kClose;
    }
  } else {
    // TLS: bytes must go through the TLS stream, so the watcher is a read on it, run
    // alongside the pipeline.
    using namespace asio::experimental::awaitable_operators;
    const auto outcome = co_await (run_pipeline(worker, &request, &downstream) ||
                                   watch_client(&stream, &buffer, limits.max_request_header_bytes));
    if (outcome.index() == 1) {
      log::debug("client {} went away mid-request", client_address);
      co_return ExchangeEnd::kClose;
    }
  }
  if (!downstream.reusable() || worker->context().draining.load()) co_return ExchangeEnd::kClose;
  co_return ExchangeEnd::kKeepAlive;
}

}  // namespace

template <typename Stream>
awaitable<void> run_http1_session(Worker* worker, Stream& stream, Worker::SessionEntry& entry,
                                  ClientBuffer buffer, std::string client_address, bool tls) {
  co_await asio::this_coro::throw_if_cancelled(false);
  GatewayContext& ctx = worker->context();
  bool linger = false;  // an early error left client bytes unread
  std::string head;     // response heads are serialised here, one request after another
  std::optional<ClientWatch> watch;
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    watch.emplace(*worker, entry, stream.socket(), buffer);
    watch->limit = ctx.state.load()->config->proxy.limits.max_request_header_bytes;
  }
  // Plain TCP: the connection's deadline (the idle wait, then each write of a response).
  std::optional<LazyDeadline> deadline;
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    deadline.emplace(tcp_of(stream).get_executor(), [sock = &stream.socket()] {
      error_code ignored;
      sock->cancel(ignored);
    });
  }

  for (;;) {
    const RuntimeStatePtr state = ctx.state.load();
    const auto& limits = state->config->proxy.limits;
    entry.idle = true;
    if (ctx.draining.load() && buffer.size() == 0) break;

    // Wait for the first byte of the next request under the keep-alive idle timeout; the
    // header timeout (408) starts once something arrived.
    if (buffer.size() == 0) {
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        // An idle connection holds no read buffer: wait for readiness (queued behind the client
        // watcher's pending wait, so no syscall), then read at once. A read that empties the
        // socket re-arms the watcher for this request, still without a syscall. The deadline
        // cancels the socket's operations.
        buffer.shrink_to_fit();
        deadline->arm_for(limits.idle_timeout);
        auto [wec] = co_await stream.socket().async_wait(tcp::socket::wait_read, kNoThrow);
        deadline->disarm();
        if (wec) break;  // idle timeout, or woken by a drain
        bool drained = false;
        error_code rec;
        const ssize_t n = recv_now(stream.socket(), buffer, 4096, drained, rec);
        if (n == 0 || rec) break;  // closed or reset
        if (n < 0) continue;       // nothing after all: wait again
        if (drained) watch->arm(true);
      } else {
        tcp_of(stream).expires_after(limits.idle_timeout);
        auto [rec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
        if (rec) break;  // closed, idle timeout, or woken by a drain
        buffer.commit(n);
      }
    }
    entry.idle = false;
    const ExchangeEnd end =
        co_await run_exchange(worker, stream, buffer, head, deadline ? &*deadline : nullptr,
                              watch ? &*watch : nullptr, client_address, tls, limits);
    if (end == ExchangeEnd::kLingerClose) linger = true;
    if (end != ExchangeEnd::kKeepAlive) break;
  }

  watch.reset();  // its wait, if still queued, completes without calling back
  error_code ignored;
  auto& sock = tcp_of(stream).socket();
  if (linger) {
    // We answered before reading everything the client sent (431, 413, 408, 400). Closing now
    // could turn the unread bytes into a RST that destroys our response in flight; instead
    // half-close and discard input for a moment, as nginx's lingering close does.
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    tcp_of(stream).expires_after(std::chrono::seconds(2));
    size_t discarded = 0;
    while (discarded < (1u << 20)) {
      buffer.clear();
      auto [lec, ln] = co_await tcp_of(stream).async_read_some(buffer.prepare(16384), kNoThrow);
      if (lec) break;
      discarded += ln;
    }
  }
  sock.shutdown(tcp::socket::shutdown_both, ignored);
  sock.close(ignored);
}

template awaitable<void> run_http1_session<beast::tcp_stream>(Worker*, beast::tcp_stream&,
                                                              Worker::SessionEntry&, ClientBuffer,
                                                              std::string, bool);
template awaitable<void> run_http1_session<beast::ssl_stream<beast::tcp_stream>>(
    Worker*, beast::ssl_stream<beast::tcp_stream>&, Worker::SessionEntry&, ClientBuffer,
    std::string, bool);

}  // namespace infergate::proxy
