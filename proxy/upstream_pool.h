#pragma once
// Keep-alive connections to one endpoint, owned by one worker (no locking: only that worker's
// thread touches it). Idle connections are reused LIFO (warmest first) and capped. Each keeps a
// ReadAnchor queued on its socket: while the connection is idle, anything the server sends (its
// close, usually) marks it dead and closes it, so it is not handed out again; in use, a wait for
// the response queues behind the anchor without a syscall. A connection whose close still went
// unnoticed is detected on use and the request is retried on a fresh one (pipeline.cpp).

#include <chrono>
#include <memory>
#include <vector>

#include "proxy/asio.h"
#include "proxy/close_check.h"
#include "proxy/h2_upstream.h"
#include "proxy/lazy_deadline.h"
#include "proxy/read_anchor.h"
#include "proxy/socket_io.h"

namespace infergate::proxy {

struct UpstreamConnection {
  // Beast sizes each read by the buffer's free capacity (at least 512 bytes): reserving up front
  // reads a typical response (head and body) in one call instead of 512-byte pieces.
  static constexpr size_t kReadBuffer = 16 * 1024;
  // `checks`: the worker's list, for a close that came with the data of a short read.
  UpstreamConnection(asio::any_io_executor ex, CloseCheckList* checks)
      : stream(ex),
        deadline(ex,
                 [this] {
                   error_code ignored;
                   stream.socket().cancel(ignored);
                 }),
        anchor(stream.socket(), &UpstreamConnection::anchor_fired, this),
        close_checks(checks),
        close_check(&UpstreamConnection::check_close, this) {
    buffer.reserve(kReadBuffer);
  }
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;
  beast::tcp_stream stream;  // the stream's own timeout is used for the connect only
  // Reads and writes go to the socket under this deadline (the response timeout for the
  // request and the response header, the idle timeout for each body read); its expiry cancels
  // them, and they report beast::error::timeout.
  LazyDeadline deadline;
  beast::flat_buffer buffer;  // bytes read from the upstream but not yet parsed
  uint64_t uses = 0;
  ReadAnchor anchor;
  // The socket is known to hold nothing: the next read waits for readiness first (pipeline.cpp,
  // read_response_bytes). True for a new connection and for one whose response ended.
  bool drained = true;
  // The last read returned less than it asked for: nothing more is buffered, but a close may
  // have come with those bytes.
  bool short_read = false;
  // The server closed or reset it (found by the close check, or by the anchor while idle): of
  // no further use once the current response is read.
  bool peer_closed = false;
  bool pooled = false;  // idle in the pool
  CloseCheckList* close_checks;
  CloseCheck close_check;
  std::chrono::steady_clock::time_point next_peek{};

 private:
  // Within a response, after a short read: a close of the server's that came with the data has
  // no event of its own. A close found wakes the response's pending wait (which then reads
  // the end). A server's close rarely shares a segment with its data, so one connection is
  // peeked at most once per kPeekEvery (the check stays linked, at no syscall, in between):
  // a long stream costs one peek a second, not one per event.
  static constexpr std::chrono::seconds kPeekEvery{1};
  static void check_close(void* self) {
    auto* c = static_cast<UpstreamConnection*>(self);
    if (c->pooled) return;  // the anchor watches idle connections
    const auto now = std::chrono::steady_clock::now();
    if (now < c->next_peek) {
      c->close_checks->schedule(c->close_check);
      return;
    }
    c->next_peek = now + kPeekEvery;
    if (peek_now(c->stream.socket()) != PeekResult::kClosed) return;
    c->peer_closed = true;
    error_code ignored;
    c->stream.socket().cancel(ignored);
  }

  // Idle: the server closed (or sent something unasked): the connection is of no further use.
  // A wake-up with nothing to read re-arms (the socket was just found empty). In use, the
  // response's reader takes the bytes.
  static void anchor_fired(void* self, const error_code& ec) {
    auto* c = static_cast<UpstreamConnection*>(self);
    if (!c->pooled || ec) return;
    if (peek_now(c->stream.socket()) == PeekResult::kEmpty) {
      c->anchor.arm(true);
      return;
    }
    c->peer_closed = true;
    error_code ignored;
    c->stream.socket().close(ignored);
  }
};

class UpstreamPool {
 public:
  // An idle connection, or null.
  std::unique_ptr<UpstreamConnection> take() {
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->peer_closed) continue;  // the server closed it meanwhile
      c->pooled = false;
      return c;
    }
    return nullptr;
  }

  // Keeps `c` for reuse if there is room, else closes it.
  void give_back(std::unique_ptr<UpstreamConnection> c, size_t max_idle) {
    if (idle_.size() >= max_idle)
      std::erase_if(idle_, [](const auto& i) { return i->peer_closed; });
    if (idle_.size() >= max_idle || c->buffer.size() != 0 || c->peer_closed)
      return;  // destructor closes it
    c->stream.expires_never();
    c->deadline.disarm();
    c->pooled = true;
    // The response ended with the last read. A close of the server's that came with it went
    // unreported; writing the next request then draws a reset, which completes the wait.
    c->drained = true;
    c->short_read = false;
    c->close_check.unlink();
    c->anchor.arm(false);  // usually pending already (armed by the last read)
    idle_.push_back(std::move(c));
  }

  void clear() {
    idle_.clear();
    h2.clear();
  }
  size_t idle() const { return idle_.size(); }

  // Resolved addresses of the endpoint (IP literal: one; DNS: cached for kResolveTtl).
  std::vector<tcp::endpoint> addresses;
  std::chrono::steady_clock::time_point resolved_at{};
  static constexpr std::chrono::seconds kResolveTtl{5};

  // Pools with appProtocol kubernetes.io/h2c: multiplexed sessions instead of idle_.
  H2UpstreamPool h2;

 private:
  std::vector<std::unique_ptr<UpstreamConnection>> idle_;
};

}  // namespace infergate::proxy
