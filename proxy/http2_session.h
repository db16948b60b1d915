#pragma once
// Downstream HTTP/2 (h2c with prior knowledge, h2 over TLS), driven sans-I/O as nghttpx drives
// nghttp2: socket bytes go into feed() (nghttp2_session_mem_recv), produce() drains
// nghttp2_session_mem_send into a capped buffer, and the nghttp2 callbacks are thin
// trampolines into member functions. Every complete request stream runs the SAME handler as
// HTTP/1.1 (run_pipeline) through an HTTP/2 Downstream adapter, as its own coroutine.
//
// Flow control and backpressure: automatic WINDOW_UPDATEs are off; request body bytes are
// consumed (nghttp2_session_consume) when they are appended to the bounded request body. A
// response's bytes wait in a per-stream queue that the data provider drains as the client's
// window allows; send_data() does not complete while the queue holds more than
// Settings::stream_buffer_bytes, so a slow client throttles its own upstream stream while the
// other streams of the connection keep flowing.
//
// Cancellation: RST_STREAM from the client (or the connection ending) emits the stream's
// cancellation signal; its pending upstream operation completes with operation_aborted and the
// upstream connection is closed, which the model server sees as a disconnect.
//
// Threading: everything runs on the owning worker's thread, and every member is called from a
// handler running on the session's executor (so a cancellation emitted from an nghttp2
// callback reaches the stream's coroutine inline, while it is still suspended); nothing is
// locked.

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>

#include "proxy/asio.h"
#include "proxy/exchange.h"
#include "proxy/worker.h"

namespace infergate::proxy {

class Http2Session {
 public:
  struct Settings {
    uint32_t max_concurrent_streams = 100;
    uint32_t max_header_list_bytes = 64u << 10;  // 431 beyond
    uint64_t max_body_bytes = 16ull << 20;       // 413 beyond
    size_t stream_buffer_bytes = 64u << 10;      // queued response bytes before send_data waits
    std::string client_address;
    bool tls = false;
    // Where each stream's header arena takes its first block (the worker's BlockPool); null:
    // the heap.
    std::pmr::memory_resource* header_blocks = nullptr;
  };
  // Runs one request to completion. Must honour per-operation cancellation (run_pipeline does).
  using Handler = std::function<awaitable<void>(DownstreamRequest*, Downstream*)>;
  // Called for the session's own early answers (413, 431), with the status, for metrics.
  using EarlyAnswerHook = std::function<void(int status)>;

  Http2Session(asio::any_io_executor ex, Settings settings, Handler handler,
               EarlyAnswerHook on_early_answer = {});
  ~Http2Session();
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Bytes from the client. False on a fatal protocol error: the session has queued a GOAWAY;
  // write out what produce() gives, then close.
  bool feed(const uint8_t* data, size_t size);
  // Appends frames to send to `out` until it holds at least `cap` bytes or nothing is pending.
  // False on a fatal error (close the connection).
  bool produce(std::string& out, size_t cap);
  // The connection has nothing more to do (both sides done, e.g. after GOAWAY and the last
  // stream closed): close it once produce() returns nothing.
  bool finished() const;
  // GOAWAY: graceful (drain: streams already received finish) or not.
  void shutdown(bool graceful);
  // The socket is gone: every running stream is cancelled. Call before waiting for tasks.
  void connection_lost();

  // Called (inline) whenever new output may be pending, so the writer can wake up.
  void set_output_waker(std::function<void()> w) { wake_output_ = std::move(w); }
  // Called (inline) when the last stream task completed, so teardown can proceed.
  void set_idle_waker(std::function<void()> w) { wake_idle_ = std::move(w); }
  size_t running_tasks() const { return running_tasks_; }
  size_t open_streams() const { return streams_.size(); }

  struct Stream;  // one request stream (defined in the .cpp)

 private:
  friend class H2Downstream;
  friend struct Callbacks;

  // Callback bodies (trampolines in the .cpp).
  int on_begin_headers(int32_t stream_id);
  int on_header(int32_t stream_id, std::string_view name, std::string_view value);
  int on_frame_recv(const nghttp2_frame* frame);
  int on_data_chunk(int32_t stream_id, const uint8_t* data, size_t len);
  int on_stream_close(int32_t stream_id, uint32_t error_code);
  ssize_t read_data(int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags);

  void request_complete(const std::shared_ptr<Stream>& s);
  void answer_early(const std::shared_ptr<Stream>& s, int status, std::string body);
  // Submits response headers (and a data provider unless `end_stream`).
  bool submit_head(Stream& s, int status, const HeaderList& headers,
                   std::optional<uint64_t> content_length, bool end_stream);
  void resume(Stream& s);
  void wake() {
    if (wake_output_) wake_output_();
  }
  static awaitable<void> run_stream(Http2Session* self, std::shared_ptr<Stream> s);
  void task_done(const std::shared_ptr<Stream>& s);

  asio::any_io_executor ex_;
  Settings settings_;
  Handler handler_;
  EarlyAnswerHook on_early_answer_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::shared_ptr<Stream>> streams_;
  size_t running_tasks_ = 0;
  bool lost_ = false;
  std::function<void()> wake_output_;
  std::function<void()> wake_idle_;
};

// Serves one connection whose first bytes (already read, the connection preface among them)
// are in `initial`. `Stream` is beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>
// (handshake done), owned by the caller, which registered it as `entry`.
template <typename Stream>
awaitable<void> run_http2_session(Worker* worker, Stream& stream, Worker::SessionEntry& entry,
                                  std::string initial, std::string client_address, bool tls);

}  // namespace infergate::proxy
