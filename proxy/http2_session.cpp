#include "proxy/http2_session.h"

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>
#include <type_traits>

#include "common/log.h"
#include "proxy/block_pool.h"
#include "proxy/errors.h"
#include "proxy/openai_body.h"
#include "proxy/pipeline.h"
#include "proxy/socket_io.h"
#include "proxy/worker.h"

namespace infergate::proxy {

using Clock = std::chrono::steady_clock;

struct Http2Session::Stream {
  Stream(asio::any_io_executor ex, int32_t stream_id, std::pmr::memory_resource* blocks)
      : id(stream_id),
        arena(BlockPool::kArenaInitialSize,
              blocks != nullptr ? blocks : std::pmr::new_delete_resource()),
        request{.msg = Request(std::piecewise_construct, std::make_tuple(),
                               std::make_tuple(FieldsAllocator(&arena))),
                .fields_allocator = FieldsAllocator(&arena)},
        drained(std::move(ex)) {}
  int32_t id;
  // The stream's header fields (the request's and the upstream response's), as an HTTP/1.1
  // exchange has them; declared before `request`, which it outlives.
  std::pmr::monotonic_buffer_resource arena;
  DownstreamRequest request;
  std::string method, path, authority;
  size_t header_bytes = 0;
  bool header_overflow = false;
  bool request_done = false;  // the client's END_STREAM arrived
  bool started = false;       // a task runs it, or the session answered it itself
  bool early = false;         // the session answered it itself (413, 431)
  uint64_t discarded = 0;     // body bytes dropped after an early answer
  bool task_running = false;
  bool closed = false;     // nghttp2 closed the stream (or the connection is gone)
  bool head_sent = false;  // response HEADERS submitted
  bool eof = false;        // every response byte is queued
  bool deferred = false;   // the data provider returned NGHTTP2_ERR_DEFERRED
  std::string out;         // queued response bytes, from out_off on
  size_t out_off = 0;
  asio::steady_timer drained;  // wakes a send_data() waiting for the queue to drain
  asio::cancellation_signal cancel;

  size_t queued() const { return out.size() - out_off; }
};

// nghttp2 callbacks: thin trampolines into the session's member functions.
struct Callbacks {
  static Http2Session* self(void* user_data) { return static_cast<Http2Session*>(user_data); }

  static int begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    return self(ud)->on_begin_headers(frame->hd.stream_id);
  }
  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                    size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    return self(ud)->on_header(frame->hd.stream_id,
                               std::string_view(reinterpret_cast<const char*>(name), namelen),
                               std::string_view(reinterpret_cast<const char*>(value), valuelen));
  }
  static int frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    return self(ud)->on_frame_recv(frame);
  }
  static int data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                        size_t len, void* ud) {
    return self(ud)->on_data_chunk(stream_id, data, len);
  }
  static int stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
    return self(ud)->on_stream_close(stream_id, error_code);
  }
  static ssize_t read(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                      uint32_t* flags, nghttp2_data_source*, void* ud) {
    return self(ud)->read_data(stream_id, buf, length, flags);
  }
};

namespace {

// After an early answer, how much of the request body is read and dropped before the upload is
// stopped with RST_STREAM (costs bandwidth, not memory: the bytes are not kept).
constexpr uint64_t kMaxDiscardBytes = 64ull << 20;

// RFC 9113 §8.2.2: connection-specific fields must not appear in HTTP/2.
bool is_connection_specific(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
      "te",         "host",       "content-length"};
  for (auto n : kNames)
    if (beast::iequals(name, n)) return true;
  return false;
}

bool cancelled_state(asio::cancellation_state st) {
  return st.cancelled() != asio::cancellation_type::none;
}

}  // namespace

// The HTTP/2 side of the protocol-neutral seam. One per running request stream; lives in the
// stream's task. Every method first checks that the stream and the connection still exist.
class H2Downstream final : public Downstream {
 public:
  H2Downstream(Http2Session* session, std::shared_ptr<Http2Session::Stream> stream)
      : session_(session), s_(std::move(stream)) {}

  awaitable<bool> send_response(int status, HeaderList headers, std::string body) override {
    if (gone()) co_return false;
    const auto size = body.size();
    s_->out = std::move(body);
    s_->out_off = 0;
    s_->eof = true;
    const bool ok = session_->submit_head(*s_, status, headers, size, size == 0);
    session_->wake();
    co_return ok;
  }

  awaitable<bool> send_head(int status, HeaderList headers,
                            std::optional<uint64_t> content_length) override {
    if (gone()) co_return false;
    const bool ok = session_->submit_head(*s_, status, headers, content_length, false);
    session_->wake();
    co_return ok;
  }

  awaitable<bool> send_data(std::string_view data) override {
    if (gone()) co_return false;
    s_->out.append(data);
    session_->resume(*s_);
    session_->wake();
    // Backpressure: the client takes bytes only as fast as its flow-control window opens.
    // The stream's cancellation is only ever emitted with the stream closed, so gone() also
    // covers a cancelled wait.
    while (!gone() && s_->queued() > session_->settings_.stream_buffer_bytes) {
      s_->drained.expires_at(Clock::time_point::max());
      co_await s_->drained.async_wait(kNoThrow);
    }
    co_return !gone();
  }

  awaitable<bool> finish() override {
    if (gone()) co_return false;
    s_->eof = true;
    session_->resume(*s_);
    session_->wake();
    co_return true;
  }

  void abort() override {
    if (gone()) return;
    nghttp2_submit_rst_stream(session_->session_, NGHTTP2_FLAG_NONE, s_->id,
                              NGHTTP2_INTERNAL_ERROR);
    session_->wake();
  }

 private:
  bool gone() const { return s_->closed || session_->lost_; }
  Http2Session* session_;
  std::shared_ptr<Http2Session::Stream> s_;
};

Http2Session::Http2Session(asio::any_io_executor ex, Settings settings, Handler handler,
                           EarlyAnswerHook on_early_answer)
    : ex_(std::move(ex)),
      settings_(std::move(settings)),
      handler_(std::move(handler)),
      on_early_answer_(std::move(on_early_answer)) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Callbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::stream_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Window updates only for bytes the request body actually took (on_data_chunk).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_bytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 64u << 10},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  // A wider connection window than the 64 KiB default, so one stream's upload does not stall
  // the others (each stream still has its own 64 KiB window).
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1 << 20);
}

Http2Session::~Http2Session() {
  nghttp2_session_del(session_);
}

bool Http2Session::feed(const uint8_t* data, size_t size) {
  if (lost_) return false;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data, size);
  wake();
  if (rv < 0) {
    log::debug("http2 {}: {}", settings_.client_address, nghttp2_strerror(static_cast<int>(rv)));
    if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  return true;
}

bool Http2Session::produce(std::string& out, size_t cap) {
  if (lost_) return false;
  while (out.size() < cap) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      log::debug("http2 {}: {}", settings_.client_address, nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return true;
}

bool Http2Session::finished() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

void Http2Session::shutdown(bool graceful) {
  if (lost_) return;
  if (graceful) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
  } else {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  }
  wake();
}

void Http2Session::connection_lost() {
  lost_ = true;
  for (auto& [id, s] : streams_) {
    s->closed = true;
    s->drained.cancel();
    if (s->task_running) s->cancel.emit(asio::cancellation_type::terminal);
  }
}

int Http2Session::on_begin_headers(int32_t stream_id) {
  auto s = std::make_shared<Stream>(ex_, stream_id, settings_.header_blocks);
  s->request.client_address = settings_.client_address;
  s->request.tls = settings_.tls;
  nghttp2_session_set_stream_user_data(session_, stream_id, s.get());
  streams_.emplace(stream_id, std::move(s));
  return 0;
}

int Http2Session::on_header(int32_t stream_id, std::string_view name, std::string_view value) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (s == nullptr || s->started) return 0;
  // RFC 9113 §6.5.2: the uncompressed size of a field is name + value + 32.
  s->header_bytes += name.size() + value.size() + 32;
  if (s->header_bytes > settings_.max_header_list_bytes) {
    s->header_overflow = true;  // answered 431 once the header block is complete
    return 0;
  }
  if (s->header_overflow) return 0;
  if (!name.empty() && name[0] == ':') {
    if (name == ":method") {
      s->method = value;
    } else if (name == ":path") {
      s->path = value;
    } else if (name == ":authority") {
      s->authority = value;
    }
    return 0;  // :scheme and :protocol: nothing to keep
  }
  if (beast::iequals(name, "cookie")) {
    auto existing = s->request.msg[http::field::cookie];
    if (!existing.empty()) {
      // RFC 9113 §8.2.3: crumbs are joined with "; " for HTTP/1.1.
      s->request.msg.set(http::field::cookie, fmt::format("{}; {}", existing, value));
      return 0;
    }
  }
  s->request.msg.insert(name, value);
  return 0;
}

int Http2Session::on_frame_recv(const nghttp2_frame* frame) {
  const int32_t id = frame->hd.stream_id;
  auto* raw =
      id == 0 ? nullptr : static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
  if (raw == nullptr) return 0;
  auto it = streams_.find(id);
  if (it == streams_.end()) return 0;
  const std::shared_ptr<Stream> s = it->second;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto& msg = s->request.msg;
    msg.version(11);
    msg.method_string(s->method);
    msg.target(s->path);
    if (!s->authority.empty() && msg.find(http::field::host) == msg.end())
      msg.set(http::field::host, s->authority);
    s->request.received_at = Clock::now();
    if (s->header_overflow) {
      answer_early(s, 431,
                   error_body(GatewayError::headers_too_large(settings_.max_header_list_bytes)));
      return 0;
    }
    const auto cl = msg[http::field::content_length];
    if (!cl.empty()) {
      uint64_t n = 0;
      const auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
      if (ec == std::errc() && p == cl.data() + cl.size() && n > settings_.max_body_bytes) {
        answer_early(s, 413, error_body(GatewayError::payload_too_large(settings_.max_body_bytes)));
        return 0;
      }
      // Room for simdjson's padding up front, so parsing the body does not copy it.
      if (ec == std::errc() && p == cl.data() + cl.size())
        msg.body().reserve(static_cast<size_t>(n) + kJsonPadding);
    }
  }
  if (end_stream && (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
    s->request_done = true;
    request_complete(s);
  }
  return 0;
}

int Http2Session::on_data_chunk(int32_t stream_id, const uint8_t* data, size_t len) {
  // The request body is held whole (the pipeline needs it before it can pick an endpoint) and
  // bounded by max_body_bytes; bytes the body took are consumed, reopening the windows.
  nghttp2_session_consume(session_, stream_id, len);
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  const std::shared_ptr<Stream> s = it->second;
  if (s->early) {
    // Answered early: the rest of the body is dropped. Clients (curl) treat RST_STREAM after
    // the response as an error, so let a bounded upload finish; past the limit, stop it.
    s->discarded += len;
    if (s->discarded > kMaxDiscardBytes)
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR);
    return 0;
  }
  if (s->started) return 0;
  auto& body = s->request.msg.body();
  if (body.size() + len > settings_.max_body_bytes) {
    answer_early(s, 413, error_body(GatewayError::payload_too_large(settings_.max_body_bytes)));
    body.clear();
    return 0;
  }
  if (body.empty() && body.capacity() < len + kJsonPadding) body.reserve(len + kJsonPadding);
  body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int Http2Session::on_stream_close(int32_t stream_id, uint32_t error_code) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  const std::shared_ptr<Stream> s = it->second;
  streams_.erase(it);
  s->closed = true;
  s->drained.cancel();
  if (s->task_running) {
    if (error_code != NGHTTP2_NO_ERROR)
      log::debug("http2 {} stream {} reset by the client ({})", settings_.client_address, stream_id,
                 nghttp2_http2_strerror(error_code));
    // The pipeline aborts its upstream at once (RST_STREAM or a stream ended under it).
    s->cancel.emit(asio::cancellation_type::terminal);
  }
  return 0;
}

ssize_t Http2Session::read_data(int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t n = std::min(length, s->queued());
  if (n > 0) std::memcpy(buf, s->out.data() + s->out_off, n);
  s->out_off += n;
  if (s->out_off == s->out.size()) {
    s->out.clear();
    s->out_off = 0;
  } else if (s->out_off > (64u << 10) && s->out_off * 2 > s->out.size()) {
    s->out.erase(0, s->out_off);
    s->out_off = 0;
  }
  if (s->queued() <= settings_.stream_buffer_bytes) s->drained.cancel();
  if (s->queued() == 0 && s->eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  } else if (n == 0) {
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

bool Http2Session::submit_head(Stream& s, int status, const HeaderList& headers,
                               std::optional<uint64_t> content_length, bool end_stream) {
  if (s.head_sent) return false;
  s.head_sent = true;
  // The field names lower-cased (HTTP/2 field names are lower case), one after another in one
  // string (reserved up front: the views into it stay valid). nghttp2 copies them all.
  std::string names;
  size_t names_size = 0;
  for (const auto& [name, value] : headers) names_size += name.size();
  names.reserve(names_size);
  const std::string status_text = std::to_string(status);
  const std::string length_text = content_length ? std::to_string(*content_length) : "";
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.size() + 2);
  auto add = [&](std::string_view n, std::string_view v, uint8_t flags = NGHTTP2_NV_FLAG_NONE) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(),
                             v.size(), flags});
  };
  add(":status", status_text);
  for (const auto& [name, value] : headers) {
    if (is_connection_specific(name)) continue;
    const size_t at = names.size();
    for (const char c : name)
      names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    const std::string_view lower(names.data() + at, name.size());
    // A request id is new on every response: indexing it would only churn the HPACK table.
    add(lower, value, lower == "x-request-id" ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
  }
  if (content_length) add("content-length", length_text);
  nghttp2_data_provider prd{};
  prd.source.ptr = &s;
  prd.read_callback = &Callbacks::read;
  const int rv =
      nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), end_stream ? nullptr : &prd);
  if (rv != 0) {
    log::debug("http2 stream {}: submit_response: {}", s.id, nghttp2_strerror(rv));
    return false;
  }
  return true;
}

void Http2Session::resume(Stream& s) {
  if (!s.deferred || !s.head_sent) return;
  s.deferred = false;
  nghttp2_session_resume_data(session_, s.id);
}

void Http2Session::answer_early(const std::shared_ptr<Stream>& s, int status, std::string body) {
  if (s->started) return;
  s->started = true;
  s->early = true;
  if (on_early_answer_) on_early_answer_(status);
  HeaderList headers;
  headers.emplace_back("content-type", "application/json");
  const auto size = body.size();
  s->out = std::move(body);
  s->out_off = 0;
  s->eof = true;
  submit_head(*s, status, headers, size, size == 0);
  wake();
}

void Http2Session::request_complete(const std::shared_ptr<Stream>& s) {
  if (s->started) return;
  s->started = true;
  s->task_running = true;
  ++running_tasks_;
  asio::co_spawn(ex_, run_stream(this, s),
                 asio::bind_cancellation_slot(s->cancel.slot(), [this, s](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       log::error("http2 stream task failed: {}", ex.what());
                     }
                   }
                   task_done(s);
                 }));
}

awaitable<void> Http2Session::run_stream(Http2Session* self, std::shared_ptr<Stream> s) {
  {
    H2Downstream downstream(self, s);
    co_await self->handler_(&s->request, &downstream);
  }
  if (s->closed || self->lost_) co_return;
  // The handler ended without a complete response (it never answered, or stopped mid-body):
  // the client must not wait for the rest.
  if (!s->head_sent || !s->eof) {
    nghttp2_submit_rst_stream(self->session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    self->wake();
  }
}

void Http2Session::task_done(const std::shared_ptr<Stream>& s) {
  s->task_running = false;
  --running_tasks_;
  if (running_tasks_ == 0 && wake_idle_) wake_idle_();
}

// ---- I/O driver

namespace {

constexpr size_t kOutputCap = 64u << 10;  // one write in flight, at most this much (+1 frame)

template <typename Stream>
awaitable<void> h2_read_loop(Http2Session* session, Stream* stream, bool* closing) {
  std::array<uint8_t, 16384> buf;
  for (;;) {
    beast::get_lowest_layer(*stream).expires_never();
    auto [ec, n] = co_await stream->async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) co_return;  // closed, reset, or cancelled because the writer finished
    if (!session->feed(buf.data(), n)) {
      // Protocol error: the writer flushes the GOAWAY and ends the connection.
      *closing = true;
      asio::steady_timer park(stream->get_executor(), Clock::time_point::max());
      co_await park.async_wait(kNoThrow);
      co_return;
    }
  }
}

template <typename Stream>
awaitable<void> h2_write_loop(Http2Session* session, Stream* stream, asio::steady_timer* wake,
                              bool* closing, std::chrono::milliseconds idle_timeout) {
  std::string out;
  for (;;) {
    out.clear();
    if (!session->produce(out, kOutputCap)) co_return;
    if (out.empty()) {
      if (session->finished() || *closing) co_return;
      // Nothing to send: wait to be woken (new output), or close an idle connection.
      if (session->open_streams() == 0)
        wake->expires_after(idle_timeout);
      else
        wake->expires_at(Clock::time_point::max());
      auto [ec] = co_await wake->async_wait(kNoThrow);
      const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
      if (cancelled_state(cs)) co_return;
      if (!ec && session->open_streams() == 0) session->shutdown(true);
      continue;
    }
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      // Plain TCP: at once when the socket takes it all (no timer, no operation), else the
      // rest under the idle timeout.
      error_code ec;
      const size_t sent = send_now(stream->socket(), asio::buffer(out), ec);
      if (ec) co_return;
      if (sent == out.size()) continue;
      stream->expires_after(idle_timeout);
      auto [wec, n] = co_await asio::async_write(
          *stream, asio::buffer(out.data() + sent, out.size() - sent), kNoThrow);
      if (wec) co_return;
    } else {
      beast::get_lowest_layer(*stream).expires_after(idle_timeout);
      auto [ec, n] = co_await asio::async_write(*stream, asio::buffer(out), kNoThrow);
      if (ec) co_return;
    }
  }
}

awaitable<void> run_pipeline_for(Worker* worker, DownstreamRequest* request,
                                 Downstream* downstream) {
  co_await run_pipeline(worker, request, downstream);
}

}  // namespace

template <typename Stream>
awaitable<void> run_http2_session(Worker* worker, Stream& stream, Worker::SessionEntry& entry,
                                  std::string initial, std::string client_address, bool tls) {
  co_await asio::this_coro::throw_if_cancelled(false);
  GatewayContext& ctx = worker->context();
  const RuntimeStatePtr state = ctx.state.load();
  const auto& limits = state->config->proxy.limits;
  Http2Session::Settings settings;
  settings.max_concurrent_streams = limits.max_concurrent_streams;
  settings.max_header_list_bytes = limits.max_request_header_bytes;
  settings.max_body_bytes = limits.max_request_body_bytes;
  settings.client_address = client_address;
  settings.tls = tls;
  settings.header_blocks = &worker->header_blocks();
  const auto idle_timeout = limits.idle_timeout;
  auto ex = stream.get_executor();
  Http2Session session(
      ex, std::move(settings),
      [worker](DownstreamRequest* r, Downstream* d) { return run_pipeline_for(worker, r, d); },
      [worker](int status) { worker->context().metrics.http_requests(status).Increment(); });
  asio::steady_timer wake(ex);
  session.set_output_waker([&wake] { wake.cancel(); });
  entry.idle = false;
  entry.on_drain = [&session] { session.shutdown(true); };
  if (ctx.draining.load()) session.shutdown(true);

  bool closing = false;
  if (!initial.empty() &&
      !session.feed(reinterpret_cast<const uint8_t*>(initial.data()), initial.size()))
    closing = true;
  {
    using namespace asio::experimental::awaitable_operators;
    co_await (h2_read_loop(&session, &stream, &closing) ||
              h2_write_loop(&session, &stream, &wake, &closing, idle_timeout));
  }
  // The connection is over: cancel what still runs, and wait for the stream tasks to unwind
  // (they reference the session).
  session.connection_lost();
  entry.on_drain = nullptr;
  asio::steady_timer idle(ex);
  session.set_idle_waker([&idle] { idle.cancel(); });
  while (session.running_tasks() > 0) {
    idle.expires_at(Clock::time_point::max());
    co_await idle.async_wait(kNoThrow);
  }
  error_code ignored;
  auto& sock = beast::get_lowest_layer(stream).socket();
  sock.shutdown(tcp::socket::shutdown_both, ignored);
  sock.close(ignored);
}

template awaitable<void> run_http2_session<beast::tcp_stream>(Worker*, beast::tcp_stream&,
                                                              Worker::SessionEntry&, std::string,
                                                              std::string, bool);
template awaitable<void> run_http2_session<beast::ssl_stream<beast::tcp_stream>>(
    Worker*, beast::ssl_stream<beast::tcp_stream>&, Worker::SessionEntry&, std::string, std::string,
    bool);

}  // namespace infergate::proxy
