// Http2Session without sockets: an nghttp2 client session in the test and the server session
// exchange bytes in memory; the io_context runs the stream tasks.

#include "proxy/http2_session.h"

#include <doctest/doctest.h>

#include <map>
#include <string>

namespace infergate::proxy {
namespace {

struct Client {
  nghttp2_session* session = nullptr;
  std::map<int32_t, std::string> body;
  std::map<int32_t, std::string> status;
  std::map<int32_t, uint32_t> closed;  // stream -> error code

  explicit Client(bool auto_window = true) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t n, void* ud) {
          static_cast<Client*>(ud)->body[id].append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl,
                const uint8_t* value, size_t vl, uint8_t, void* ud) {
          if (std::string_view(reinterpret_cast<const char*>(name), nl) == ":status")
            static_cast<Client*>(ud)->status[f->hd.stream_id] =
                std::string(reinterpret_cast<const char*>(value), vl);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t id, uint32_t code, void* ud) {
          static_cast<Client*>(ud)->closed[id] = code;
          return 0;
        });
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    if (!auto_window) nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_client_new2(&session, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session); }

  int32_t get(const std::string& path,
              const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    std::vector<nghttp2_nv> nva;
    auto add = [&](const std::string& n, const std::string& v) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                     NGHTTP2_NV_FLAG_NONE});
    };
    static const std::string m = ":method", g = "GET", s = ":scheme", h = "http", p = ":path",
                             a = ":authority", host = "test";
    add(m, g);
    add(s, h);
    add(p, path);
    add(a, host);
    for (const auto& [n, v] : extra) add(n, v);
    return nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), nullptr, nullptr);
  }
};

// Moves bytes both ways and runs ready handlers until nothing moves. The transfers run as
// handlers of `io`, as the socket loops do in the gateway (so a cancellation emitted from an
// nghttp2 callback is delivered inline, on the session's executor).
void pump(asio::io_context& io, Http2Session& server, Client& client) {
  for (int round = 0; round < 1000; ++round) {
    bool progress = false;
    asio::post(io, [&] {
      const uint8_t* data = nullptr;
      ssize_t n = 0;
      while ((n = nghttp2_session_mem_send(client.session, &data)) > 0) {
        server.feed(data, static_cast<size_t>(n));
        progress = true;
      }
      std::string out;
      server.produce(out, 1 << 20);
      if (!out.empty()) {
        nghttp2_session_mem_recv(client.session, reinterpret_cast<const uint8_t*>(out.data()),
                                 out.size());
        progress = true;
      }
    });
    if (io.poll() > 1) progress = true;
    io.restart();
    if (!progress) return;
  }
}

struct Probe {
  std::string path;
  size_t sent = 0;
  bool done = false;
  bool cancelled = false;
};

awaitable<void> respond_hello(Probe* probe, DownstreamRequest* req, Downstream* down) {
  probe->path = std::string(req->msg.target());
  HeaderList headers{{"Content-Type", "text/plain"}};
  co_await down->send_response(200, std::move(headers), std::string("hello"));
  probe->done = true;
}

awaitable<void> stream_forever(Probe* probe, DownstreamRequest*, Downstream* down) {
  HeaderList headers{{"content-type", "text/event-stream"}};
  co_await down->send_head(200, std::move(headers), std::nullopt);
  const std::string chunk(16384, 'x');
  for (int i = 0; i < 1000; ++i) {
    if (!co_await down->send_data(chunk)) {
      probe->cancelled = true;
      break;
    }
    probe->sent += chunk.size();
  }
  probe->done = true;
}

awaitable<void> wait_long(Probe* probe, DownstreamRequest*, Downstream*) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
  auto [ec] = co_await t.async_wait(kNoThrow);
  probe->cancelled = ec == asio::error::operation_aborted;
  probe->done = true;
}

using Fn = awaitable<void> (*)(Probe*, DownstreamRequest*, Downstream*);

Http2Session::Handler handler(Fn fn, Probe* probe) {
  return [fn, probe](DownstreamRequest* r, Downstream* d) { return fn(probe, r, d); };
}

TEST_CASE("http2 session: a request runs the handler and its response reaches the client") {
  asio::io_context io;
  Probe probe;
  Http2Session server(io.get_executor(), {}, handler(&respond_hello, &probe));
  Client client;
  const int32_t id = client.get("/v1/models");
  pump(io, server, client);
  CHECK(probe.done);
  CHECK(probe.path == "/v1/models");
  CHECK(client.status[id] == "200");
  CHECK(client.body[id] == "hello");
  CHECK(client.closed.count(id) == 1);
  CHECK(client.closed[id] == NGHTTP2_NO_ERROR);
  CHECK(server.running_tasks() == 0);
}

TEST_CASE("http2 session: send_data waits while the client's window is closed") {
  asio::io_context io;
  Probe probe;
  Http2Session::Settings settings;
  settings.stream_buffer_bytes = 64u << 10;
  Http2Session server(io.get_executor(), settings, handler(&stream_forever, &probe));
  Client client(/*auto_window=*/false);  // never opens the window past the initial 64 KiB
  const int32_t id = client.get("/stream");
  pump(io, server, client);
  CHECK_FALSE(probe.done);  // blocked in send_data
  CHECK(client.body[id].size() == 65535);
  // Bounded: what the client got, plus the stream's queue, plus one chunk.
  CHECK(probe.sent <= 65535 + settings.stream_buffer_bytes + 16384);
  // Closing the stream from the client side releases the handler.
  nghttp2_submit_rst_stream(client.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump(io, server, client);
  CHECK(probe.done);
  CHECK(probe.cancelled);
  CHECK(server.running_tasks() == 0);
}

TEST_CASE("http2 session: RST_STREAM cancels the stream's handler at once") {
  asio::io_context io;
  Probe probe;
  Http2Session server(io.get_executor(), {}, handler(&wait_long, &probe));
  Client client;
  const int32_t id = client.get("/slow");
  pump(io, server, client);
  CHECK_FALSE(probe.done);
  CHECK(server.running_tasks() == 1);
  nghttp2_submit_rst_stream(client.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump(io, server, client);
  CHECK(probe.done);
  CHECK(probe.cancelled);
  CHECK(server.running_tasks() == 0);
}

TEST_CASE("http2 session: connection loss cancels every running stream") {
  asio::io_context io;
  Probe a, b;
  Http2Session server(io.get_executor(), {}, handler(&wait_long, &a));
  Client client;
  client.get("/one");
  client.get("/two");
  pump(io, server, client);
  CHECK(server.running_tasks() == 2);
  asio::post(io, [&] { server.connection_lost(); });
  io.poll();
  CHECK(server.running_tasks() == 0);
  (void)b;
}

TEST_CASE("http2 session: an oversized header list is answered 431, the handler never runs") {
  asio::io_context io;
  Probe probe;
  Http2Session::Settings settings;
  settings.max_header_list_bytes = 1024;
  int early = 0;
  Http2Session server(io.get_executor(), settings, handler(&respond_hello, &probe),
                      [&early](int status) { early = status; });
  Client client;
  const int32_t id = client.get("/big", {{"x-big", std::string(2000, 'a')}});
  pump(io, server, client);
  CHECK_FALSE(probe.done);
  CHECK(early == 431);
  CHECK(client.status[id] == "431");
  CHECK(client.body[id].find("request_header_fields_too_large") != std::string::npos);
}

TEST_CASE("http2 session: graceful shutdown sends GOAWAY and finishes when streams are done") {
  asio::io_context io;
  Probe probe;
  Http2Session server(io.get_executor(), {}, handler(&respond_hello, &probe));
  Client client;
  client.get("/x");
  pump(io, server, client);
  CHECK_FALSE(server.finished());
  server.shutdown(true);
  pump(io, server, client);
  CHECK(nghttp2_session_get_remote_settings(client.session,
                                            NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) == 100);
  CHECK(server.finished());
}

}  // namespace
}  // namespace infergate::proxy
