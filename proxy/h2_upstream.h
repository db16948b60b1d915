#pragma once
// Upstream h2c (pools with appProtocol kubernetes.io/h2c): multiplexed HTTP/2 sessions to one
// endpoint, owned by one worker (nothing is locked). Driven sans-I/O like the downstream
// session: a read loop feeds nghttp2_session_mem_recv, a write loop drains mem_send with one
// write in flight.
//
// Backpressure: automatic WINDOW_UPDATEs are off; response body bytes are consumed
// (nghttp2_session_consume) only when the pipeline takes them with read_some(), so a stream
// whose client is slow holds at most one stream window (64 KiB) in the gateway and the pod is
// throttled by HTTP/2 flow control. Cancellation: a stream dropped before its end is reset
// (RST_STREAM CANCEL), which the pod sees as the client going away.

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/asio.h"
#include "proxy/exchange.h"

namespace infergate::proxy {

// A header field of a request to submit: views that must stay valid during submit().
using H2FieldView = std::pair<std::string_view, std::string_view>;

class H2UpstreamSession;

// One request on an upstream session.
class H2UpstreamStream {
 public:
  explicit H2UpstreamStream(asio::any_io_executor ex) : wake(std::move(ex)) {}
  ~H2UpstreamStream();  // an unfinished stream is reset
  H2UpstreamStream(const H2UpstreamStream&) = delete;
  H2UpstreamStream& operator=(const H2UpstreamStream&) = delete;

  // Waits for the response headers. Error: timeout, or the stream/connection ended first
  // (`refused` then says the pod did not process it: safe to retry elsewhere).
  awaitable<error_code> wait_headers(std::chrono::milliseconds timeout);
  // Body bytes as they arrive, at most `cap`; 0 bytes and no error once done().
  awaitable<std::pair<error_code, size_t>> read_some(char* buf, size_t cap,
                                                     std::chrono::milliseconds timeout);
  bool done() const { return closed && queued() == 0; }

  int status = 0;
  HeaderList headers;  // lower-case names, pseudo-headers removed
  bool headers_done = false;
  bool closed = false;
  bool refused = false;  // REFUSED_STREAM, or above a GOAWAY's last stream id, or no response
  uint32_t error_code_ = 0;
  int32_t id = -1;

 private:
  friend class H2UpstreamSession;
  size_t queued() const { return in.size() - in_off; }
  std::string in;  // received body bytes not yet taken
  size_t in_off = 0;
  std::string out;  // request body
  size_t out_off = 0;
  asio::steady_timer wake;
  std::shared_ptr<H2UpstreamSession> session;
};

class H2UpstreamSession : public std::enable_shared_from_this<H2UpstreamSession> {
 public:
  explicit H2UpstreamSession(asio::any_io_executor ex);
  ~H2UpstreamSession();
  H2UpstreamSession(const H2UpstreamSession&) = delete;
  H2UpstreamSession& operator=(const H2UpstreamSession&) = delete;

  // Connects and starts the session loops. Error: connect failure or timeout.
  awaitable<error_code> connect(const std::vector<tcp::endpoint>& addresses,
                                std::chrono::milliseconds timeout);
  // Opens a stream for `msg`'s method, target and body (copied) with the header `fields` (the
  // pipeline's upstream fields; connection-specific ones and Host are left out, Host becomes
  // :authority). Null if the session cannot take it.
  std::shared_ptr<H2UpstreamStream> submit(const Request& msg, std::span<const H2FieldView> fields,
                                           const std::string& authority);
  // Has a free stream slot (below the pod's SETTINGS_MAX_CONCURRENT_STREAMS and `cap`).
  bool usable(uint32_t cap) const;
  bool alive() const { return !dead_; }
  size_t active_streams() const { return streams_.size(); }
  void close();

 private:
  friend class H2UpstreamStream;
  friend struct H2UpstreamCallbacks;
  static awaitable<void> run(std::shared_ptr<H2UpstreamSession> self);
  awaitable<void> read_loop();
  awaitable<void> write_loop();
  void wake_writer() { write_wake_.cancel(); }
  void fail_all();
  void consume(H2UpstreamStream& s, size_t n);
  void reset(H2UpstreamStream& s);

  int on_header(int32_t id, std::string_view name, std::string_view value);
  int on_frame_recv(const nghttp2_frame* frame);
  int on_data_chunk(int32_t id, const uint8_t* data, size_t len);
  int on_stream_close(int32_t id, uint32_t error_code);
  ssize_t read_body(int32_t id, uint8_t* buf, size_t length, uint32_t* flags);

  beast::tcp_stream stream_;
  asio::steady_timer write_wake_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, H2UpstreamStream*> streams_;
  bool dead_ = false;
  bool goaway_ = false;
};

// The h2c sessions of one endpoint on one worker.
class H2UpstreamPool {
 public:
  ~H2UpstreamPool() { clear(); }
  // A live session with a free stream slot, or null.
  std::shared_ptr<H2UpstreamSession> find(uint32_t cap);
  void add(std::shared_ptr<H2UpstreamSession> s) { sessions_.push_back(std::move(s)); }
  void clear();
  size_t size() const { return sessions_.size(); }

 private:
  std::vector<std::shared_ptr<H2UpstreamSession>> sessions_;
};

}  // namespace infergate::proxy
