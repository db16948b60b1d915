#include "proxy/http1_session.h"

#include <boost/beast/ssl.hpp>
#include <type_traits>

#include "common/log.h"
#include "proxy/errors.h"
#include "proxy/exchange.h"
#include "proxy/pipeline.h"
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
  H1Downstream(Stream& stream, std::chrono::milliseconds write_timeout, bool keep_alive,
               unsigned version)
      : stream_(stream),
        write_timeout_(write_timeout),
        keep_alive_(keep_alive),
        version_(version) {}

  awaitable<bool> send_response(int status, HeaderList headers, std::string body) override {
    http::response<http::string_body> res{static_cast<http::status>(status), version_};
    for (auto& [name, value] : headers) res.insert(name, value);
    res.body() = std::move(body);
    res.keep_alive(keep_alive_);
    res.prepare_payload();
    tcp_of(stream_).expires_after(write_timeout_);
    auto [ec, n] = co_await http::async_write(stream_, res, kNoThrow);
    if (ec) broken_ = true;
    co_return !ec;
  }

  awaitable<bool> send_head(int status, HeaderList headers,
                            std::optional<uint64_t> content_length) override {
    http::response<http::empty_body> res{static_cast<http::status>(status), version_};
    for (auto& [name, value] : headers) res.insert(name, value);
    if (content_length) {
      res.content_length(*content_length);
    } else if (version_ >= 11) {
      res.chunked(true);
      chunked_ = true;
    } else {
      keep_alive_ = false;  // HTTP/1.0: the body ends when the connection closes
    }
    res.keep_alive(keep_alive_);
    http::response_serializer<http::empty_body> sr{res};
    tcp_of(stream_).expires_after(write_timeout_);
    auto [ec, n] = co_await http::async_write_header(stream_, sr, kNoThrow);
    if (ec) broken_ = true;
    co_return !ec;
  }

  awaitable<bool> send_data(std::string_view data) override {
    if (data.empty()) co_return true;
    tcp_of(stream_).expires_after(write_timeout_);
    error_code ec;
    if (chunked_) {
      std::tie(ec, std::ignore) = co_await asio::async_write(
          stream_, http::make_chunk(asio::buffer(data.data(), data.size())), kNoThrow);
    } else {
      std::tie(ec, std::ignore) =
          co_await asio::async_write(stream_, asio::buffer(data.data(), data.size()), kNoThrow);
    }
    if (ec) broken_ = true;
    co_return !ec;
  }

  awaitable<bool> finish() override {
    if (!chunked_) co_return true;
    tcp_of(stream_).expires_after(write_timeout_);
    auto [ec, n] = co_await asio::async_write(stream_, http::make_chunk_last(), kNoThrow);
    if (ec) broken_ = true;
    co_return !ec;
  }

  void abort() override { broken_ = true; }

  // After the exchange: may the connection carry another request?
  bool reusable() const { return keep_alive_ && !broken_; }

 private:
  Stream& stream_;
  std::chrono::milliseconds write_timeout_;
  bool keep_alive_;
  unsigned version_;
  bool chunked_ = false;
  bool broken_ = false;
};

// Watches the client socket while a request is being proxied. Completes when the client
// closes or resets (the caller then cancels the pipeline). Pipelined bytes that arrive in the
// meantime are kept in `buffer` for the next request, up to `limit`; past that it stops
// reading (TCP backpressure) and just waits to be cancelled.
template <typename Stream>
awaitable<void> watch_client(Stream* stream, beast::flat_buffer* buffer, size_t limit) {
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
    error_code ec;
    size_t n = 0;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      // The socket itself: no tcp_stream timeout on a read that may wait for a long response.
      std::tie(ec, n) = co_await stream->socket().async_read_some(buffer->prepare(4096), kNoThrow);
    } else {
      // TLS reads go through the stream; the writes' timeouts must not apply to this read.
      tcp_of(*stream).expires_never();
      std::tie(ec, n) = co_await stream->async_read_some(buffer->prepare(4096), kNoThrow);
    }
    if (ec) co_return;  // closed, reset, or cancelled because the exchange finished
    buffer->commit(n);
  }
}

// Early errors (before a request reaches the pipeline) close the connection afterwards.
template <typename Stream>
awaitable<void> reply_and_close(Stream* stream, Worker* worker, const GatewayError& e,
                                unsigned version, std::chrono::milliseconds timeout) {
  worker->context().metrics.http_requests(e.status).Increment();
  H1Downstream<Stream> down(*stream, timeout, false, version);
  co_await send_error(&down, e, worker->new_request_id());
}

// Reads the request's headers (header_only) or the rest of it under a deadline, without closing
// the socket when the deadline passes: beast::tcp_stream's own timeout closes it, which would
// make the 408 impossible to send. The timer cancels the socket's pending I/O instead, and the
// read's error becomes beast::error::timeout.
template <typename Stream>
awaitable<error_code> read_request_part(Stream* stream, beast::flat_buffer* buffer,
                                        http::request_parser<http::string_body>* parser,
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

}  // namespace

template <typename Stream>
awaitable<void> run_http1_session(Worker* worker, Stream& stream, Worker::SessionEntry& entry,
                                  std::string initial, std::string client_address, bool tls) {
  co_await asio::this_coro::throw_if_cancelled(false);
  beast::flat_buffer buffer;
  if (!initial.empty()) {
    const auto n = asio::buffer_copy(buffer.prepare(initial.size()), asio::buffer(initial));
    buffer.commit(n);
  }
  GatewayContext& ctx = worker->context();
  bool linger = false;  // an early error left client bytes unread

  for (;;) {
    const RuntimeStatePtr state = ctx.state.load();
    const auto& limits = state->config->proxy.limits;
    entry.idle = true;
    if (ctx.draining.load() && buffer.size() == 0) break;

    // Wait for the first byte of the next request under the keep-alive idle timeout; the
    // header timeout (408) starts once something arrived.
    if (buffer.size() == 0) {
      tcp_of(stream).expires_after(limits.idle_timeout);
      auto [rec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
      if (rec) break;  // closed, idle timeout, or woken by a drain
      buffer.commit(n);
    }
    entry.idle = false;

    http::request_parser<http::string_body> parser;
    parser.header_limit(limits.max_request_header_bytes);
    parser.body_limit(limits.max_request_body_bytes);
    const error_code hec =
        co_await read_request_part(&stream, &buffer, &parser, true, limits.header_timeout);
    if (hec) {
      if (hec == http::error::body_limit) {
        // The announced Content-Length is over the limit (Beast checks it with the headers).
        linger = true;
        co_await reply_and_close(&stream, worker,
                                 GatewayError::payload_too_large(limits.max_request_body_bytes),
                                 parser.get().version(), limits.idle_timeout);
      } else if (hec == http::error::header_limit) {
        linger = true;
        co_await reply_and_close(&stream, worker,
                                 GatewayError::headers_too_large(limits.max_request_header_bytes),
                                 11, limits.idle_timeout);
      } else if (hec == beast::error::timeout) {
        linger = true;
        co_await reply_and_close(&stream, worker, GatewayError::request_timeout(), 11,
                                 limits.idle_timeout);
      } else if (hec != http::error::end_of_stream && hec != asio::error::eof &&
                 hec != asio::error::connection_reset && hec != asio::error::operation_aborted) {
        linger = true;
        co_await reply_and_close(
            &stream, worker,
            GatewayError::bad_request(fmt::format("malformed HTTP request: {}", hec.message())), 11,
            limits.idle_timeout);
      }
      break;
    }
    const unsigned version = parser.get().version();
    if (const auto cl = parser.content_length(); cl && *cl > limits.max_request_body_bytes) {
      linger = true;
      co_await reply_and_close(&stream, worker,
                               GatewayError::payload_too_large(limits.max_request_body_bytes),
                               version, limits.idle_timeout);
      break;
    }
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      tcp_of(stream).expires_after(limits.idle_timeout);
      auto [cec, cn] = co_await asio::async_write(
          stream, asio::buffer(kContinue.data(), kContinue.size()), kNoThrow);
      if (cec) break;
    }
    if (!parser.is_done()) {
      const error_code bec =
          co_await read_request_part(&stream, &buffer, &parser, false, limits.body_timeout);
      if (bec) {
        if (bec == http::error::body_limit) {
          linger = true;
          co_await reply_and_close(&stream, worker,
                                   GatewayError::payload_too_large(limits.max_request_body_bytes),
                                   version, limits.idle_timeout);
        } else if (bec == beast::error::timeout) {
          linger = true;
          co_await reply_and_close(&stream, worker, GatewayError::request_timeout(), version,
                                   limits.idle_timeout);
        } else if (bec != http::error::end_of_stream && bec != asio::error::eof &&
                   bec != http::error::partial_message && bec != asio::error::connection_reset) {
          linger = true;
          co_await reply_and_close(&stream, worker,
                                   GatewayError::bad_request(fmt::format(
                                       "malformed HTTP request body: {}", bec.message())),
                                   version, limits.idle_timeout);
        }
        break;
      }
    }
    tcp_of(stream).expires_never();

    DownstreamRequest request;
    request.msg = parser.release();
    request.client_address = client_address;
    request.tls = tls;
    request.received_at = Clock::now();
    const bool keep_alive = request.msg.keep_alive() && !ctx.draining.load();
    H1Downstream<Stream> downstream(stream, limits.idle_timeout, keep_alive, version);

    using namespace asio::experimental::awaitable_operators;
    const auto outcome = co_await (run_pipeline(worker, &request, &downstream) ||
                                   watch_client(&stream, &buffer, limits.max_request_header_bytes));
    if (outcome.index() == 1) {
      log::debug("client {} went away mid-request", client_address);
      break;
    }
    if (!downstream.reusable() || ctx.draining.load()) break;
  }

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
                                                              Worker::SessionEntry&, std::string,
                                                              std::string, bool);
template awaitable<void> run_http1_session<beast::ssl_stream<beast::tcp_stream>>(
    Worker*, beast::ssl_stream<beast::tcp_stream>&, Worker::SessionEntry&, std::string, std::string,
    bool);

}  // namespace infergate::proxy
