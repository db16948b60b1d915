#pragma once
// Keep-alive connections to one endpoint, owned by one worker (no locking: only that worker's
// thread touches it). Idle connections are reused LIFO (warmest first) and capped; a
// connection that turns out to be closed by the server is detected on use and the request is
// retried on a fresh one (pipeline.cpp).

#include <chrono>
#include <memory>
#include <vector>

#include "proxy/asio.h"
#include "proxy/h2_upstream.h"
#include "proxy/lazy_deadline.h"

namespace infergate::proxy {

struct UpstreamConnection {
  // Beast sizes each read by the buffer's free capacity (at least 512 bytes): reserving up front
  // reads a typical response (head and body) in one call instead of 512-byte pieces.
  static constexpr size_t kReadBuffer = 16 * 1024;
  explicit UpstreamConnection(asio::any_io_executor ex)
      : stream(ex), deadline(ex, [this] {
          error_code ignored;
          stream.socket().cancel(ignored);
        }) {
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
};

class UpstreamPool {
 public:
  // An idle connection, or null.
  std::unique_ptr<UpstreamConnection> take() {
    if (idle_.empty()) return nullptr;
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }

  // Keeps `c` for reuse if there is room, else closes it.
  void give_back(std::unique_ptr<UpstreamConnection> c, size_t max_idle) {
    if (idle_.size() >= max_idle || c->buffer.size() != 0) return;  // destructor closes it
    c->stream.expires_never();
    c->deadline.disarm();
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
