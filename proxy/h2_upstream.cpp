#include "proxy/h2_upstream.h"

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace infergate::proxy {

using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kOutputCap = 64u << 10;
constexpr int32_t kStreamWindow = 64 << 10;
constexpr int32_t kConnectionWindow = 16 << 20;

bool is_connection_specific(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "host"};
  for (auto n : kNames)
    if (beast::iequals(name, n)) return true;
  return false;
}

}  // namespace

struct H2UpstreamCallbacks {
  static H2UpstreamSession* self(void* ud) { return static_cast<H2UpstreamSession*>(ud); }
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
  static int data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                        void* ud) {
    return self(ud)->on_data_chunk(id, data, len);
  }
  static int stream_close(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
    return self(ud)->on_stream_close(id, code);
  }
  static ssize_t read(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                      nghttp2_data_source*, void* ud) {
    return self(ud)->read_body(id, buf, length, flags);
  }
};

// ---- stream

H2UpstreamStream::~H2UpstreamStream() {
  if (!session || session->dead_ || id < 0) return;
  if (queued() > 0) nghttp2_session_consume_connection(session->session_, queued());
  if (!closed) {
    // Dropped before its end (the client went away, or the relay failed): the pod must see it.
    nghttp2_submit_rst_stream(session->session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    session->streams_.erase(id);
  }
  session->wake_writer();
}

awaitable<error_code> H2UpstreamStream::wait_headers(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (headers_done) co_return error_code{};
    if (closed) co_return error_code(asio::error::connection_reset);
    wake.expires_at(deadline);
    auto [ec] = co_await wake.async_wait(kNoThrow);
    const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none)
      co_return error_code(asio::error::operation_aborted);
    if (!ec && !headers_done && !closed) co_return error_code(beast::error::timeout);
  }
}

awaitable<std::pair<error_code, size_t>> H2UpstreamStream::read_some(
    char* buf, size_t cap, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (queued() > 0) {
      const size_t n = std::min(cap, queued());
      std::memcpy(buf, in.data() + in_off, n);
      in_off += n;
      if (in_off == in.size()) {
        in.clear();
        in_off = 0;
      }
      // Taken by the pipeline: only now may the pod send more.
      if (session && !session->dead_) session->consume(*this, n);
      co_return std::pair<error_code, size_t>{error_code{}, n};
    }
    if (closed) {
      if (error_code_ != NGHTTP2_NO_ERROR)
        co_return std::pair<error_code, size_t>{asio::error::connection_reset, 0};
      co_return std::pair<error_code, size_t>{error_code{}, 0};
    }
    wake.expires_at(deadline);
    auto [ec] = co_await wake.async_wait(kNoThrow);
    const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none)
      co_return std::pair<error_code, size_t>{asio::error::operation_aborted, 0};
    if (!ec && queued() == 0 && !closed)
      co_return std::pair<error_code, size_t>{beast::error::timeout, 0};
  }
}

// ---- session

H2UpstreamSession::H2UpstreamSession(asio::any_io_executor ex)
    : stream_(ex), write_wake_(std::move(ex)) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &H2UpstreamCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2UpstreamCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2UpstreamCallbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2UpstreamCallbacks::stream_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
}

H2UpstreamSession::~H2UpstreamSession() {
  nghttp2_session_del(session_);
}

awaitable<error_code> H2UpstreamSession::connect(const std::vector<tcp::endpoint>& addresses,
                                                 std::chrono::milliseconds timeout) {
  stream_.expires_after(timeout);
  auto [ec, ep] = co_await stream_.async_connect(addresses, kNoThrow);
  stream_.expires_never();
  if (ec) {
    dead_ = true;
    co_return ec;
  }
  error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  asio::co_spawn(stream_.get_executor(), run(shared_from_this()), asio::detached);
  co_return error_code{};
}

awaitable<void> H2UpstreamSession::run(std::shared_ptr<H2UpstreamSession> self) {
  {
    using namespace asio::experimental::awaitable_operators;
    co_await (self->read_loop() || self->write_loop());
  }
  self->dead_ = true;
  self->fail_all();
  error_code ignored;
  self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  self->stream_.socket().close(ignored);
}

awaitable<void> H2UpstreamSession::read_loop() {
  std::array<uint8_t, 16384> buf;
  for (;;) {
    stream_.expires_never();
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec || dead_) co_return;
    const ssize_t rv = nghttp2_session_mem_recv(session_, buf.data(), n);
    if (rv < 0) {
      log::debug("upstream h2c: {}", nghttp2_strerror(static_cast<int>(rv)));
      co_return;
    }
    wake_writer();
  }
}

awaitable<void> H2UpstreamSession::write_loop() {
  std::string out;
  for (;;) {
    out.clear();
    while (out.size() < kOutputCap && !dead_) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) co_return;
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (dead_) co_return;
    if (out.empty()) {
      if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0)
        co_return;
      write_wake_.expires_at(Clock::time_point::max());
      co_await write_wake_.async_wait(kNoThrow);
      const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return;
      continue;
    }
    stream_.expires_after(std::chrono::seconds(60));
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(out), kNoThrow);
    if (ec) co_return;
  }
}

std::shared_ptr<H2UpstreamStream> H2UpstreamSession::submit(const Request& msg,
                                                            std::span<const H2FieldView> fields,
                                                            const std::string& authority) {
  if (dead_ || goaway_) return nullptr;
  auto s = std::make_shared<H2UpstreamStream>(stream_.get_executor());
  s->out = msg.body();
  std::vector<std::string> names;  // lower-cased, as HTTP/2 requires
  names.reserve(fields.size());
  for (const auto& [name, value] : fields) {
    if (is_connection_specific(name)) continue;
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    names.push_back(std::move(lower));
  }
  std::vector<nghttp2_nv> nva;
  nva.reserve(names.size() + 4);
  auto add = [&](std::string_view n, std::string_view v) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(),
                             v.size(), NGHTTP2_NV_FLAG_NONE});
  };
  const std::string method(msg.method_string());
  const std::string path(msg.target());
  add(":method", method);
  add(":scheme", "http");
  add(":authority", authority);
  add(":path", path);
  size_t k = 0;
  for (const auto& [name, value] : fields) {
    if (is_connection_specific(name)) continue;
    add(names[k++], value);
  }
  nghttp2_data_provider prd{};
  prd.source.ptr = s.get();
  prd.read_callback = &H2UpstreamCallbacks::read;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            s->out.empty() ? nullptr : &prd, s.get());
  if (id < 0) return nullptr;
  s->id = id;
  s->session = shared_from_this();
  streams_[id] = s.get();
  wake_writer();
  return s;
}

bool H2UpstreamSession::usable(uint32_t cap) const {
  if (dead_ || goaway_) return false;
  const uint32_t remote =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < std::min(remote, cap);
}

void H2UpstreamSession::close() {
  if (dead_) return;
  dead_ = true;
  fail_all();
  error_code ignored;
  stream_.socket().close(ignored);  // the loops end; run() releases the session
  write_wake_.cancel();
}

void H2UpstreamSession::fail_all() {
  for (auto& [id, s] : streams_) {
    s->closed = true;
    if (s->error_code_ == 0) s->error_code_ = NGHTTP2_CANCEL;
    s->wake.cancel();
  }
  streams_.clear();
}

void H2UpstreamSession::consume(H2UpstreamStream& s, size_t n) {
  if (s.closed)
    nghttp2_session_consume_connection(session_, n);
  else
    nghttp2_session_consume(session_, s.id, n);
  wake_writer();
}

int H2UpstreamSession::on_header(int32_t id, std::string_view name, std::string_view value) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return 0;
  H2UpstreamStream& s = *it->second;
  if (name == ":status") {
    s.status = 0;
    for (char c : value) s.status = s.status * 10 + (c - '0');
    s.headers.clear();  // a final response after 1xx starts over
  } else if (!name.empty() && name[0] != ':' && !s.headers_done) {
    s.headers.emplace_back(std::string(name), std::string(value));
  }
  return 0;
}

int H2UpstreamSession::on_frame_recv(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    goaway_ = true;  // no new streams; the open ones below last_stream_id finish
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto it = streams_.find(frame->hd.stream_id);
  if (it == streams_.end()) return 0;
  H2UpstreamStream& s = *it->second;
  if (s.status >= 200 && !s.headers_done) {
    s.headers_done = true;
    s.wake.cancel();
  }
  return 0;
}

int H2UpstreamSession::on_data_chunk(int32_t id, const uint8_t* data, size_t len) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    nghttp2_session_consume(session_, id, len);  // nobody will take these
    return 0;
  }
  H2UpstreamStream& s = *it->second;
  s.in.append(reinterpret_cast<const char*>(data), len);
  s.wake.cancel();
  return 0;
}

int H2UpstreamSession::on_stream_close(int32_t id, uint32_t error_code) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return 0;
  H2UpstreamStream& s = *it->second;
  streams_.erase(it);
  s.closed = true;
  s.error_code_ = error_code;
  s.refused = error_code == NGHTTP2_REFUSED_STREAM;
  s.wake.cancel();
  return 0;
}

ssize_t H2UpstreamSession::read_body(int32_t id, uint8_t* buf, size_t length, uint32_t* flags) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  H2UpstreamStream& s = *it->second;
  const size_t n = std::min(length, s.out.size() - s.out_off);
  std::memcpy(buf, s.out.data() + s.out_off, n);
  s.out_off += n;
  if (s.out_off == s.out.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

// ---- pool

std::shared_ptr<H2UpstreamSession> H2UpstreamPool::find(uint32_t cap) {
  std::erase_if(sessions_, [](const auto& s) { return !s->alive(); });
  for (auto& s : sessions_)
    if (s->usable(cap)) return s;
  return nullptr;
}

void H2UpstreamPool::clear() {
  for (auto& s : sessions_) s->close();
  sessions_.clear();
}

}  // namespace infergate::proxy
