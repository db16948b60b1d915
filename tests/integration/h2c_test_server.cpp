// A minimal h2c (HTTP/2 with prior knowledge) model server for the upstream h2c tests, built
// on nghttp2: POST /v1/completions and /v1/chat/completions answer OpenAI-shaped JSON or SSE
// (echoing the request's model), GET /stats reports what the server saw. Single-threaded,
// poll(2)-driven. infergate-sim speaks HTTP/1.1 only.
//
// usage: h2c_test_server [--max-streams N] [--delay-ms MS] [--tokens N] [--itl-ms MS]
// prints "h2c-test-server listening on 127.0.0.1:PORT" once ready.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  uint32_t max_streams = 100;
  int delay_ms = 0;
  int tokens = 5;
  int itl_ms = 0;
};
Options opt;

struct Stats {
  int connections = 0;
  int requests = 0;
  size_t max_concurrent = 0;
  int aborted = 0;
  std::string last_headers = "{}";  // the last model request's regular header fields, as JSON
} stats;

struct Conn;

struct Stream {
  int32_t id = 0;
  std::string method, path, body;
  std::string headers;  // regular fields as JSON members ("name":"value",...)
  bool complete = false, started = false, sse = false, eof = false, deferred = false;
  std::string model;
  int remaining = 0;
  Clock::time_point start_at, next;
  std::string out;
  size_t off = 0;
};

struct Conn {
  int fd = -1;
  int index = 0;
  nghttp2_session* session = nullptr;
  std::map<int32_t, std::unique_ptr<Stream>> streams;
  std::string wbuf;
  bool dead = false;
};

std::string json_string_field(const std::string& body, const std::string& key) {
  const auto k = body.find("\"" + key + "\"");
  if (k == std::string::npos) return "";
  const auto q1 = body.find('"', body.find(':', k) + 1);
  const auto q2 = body.find('"', q1 + 1);
  return q1 == std::string::npos || q2 == std::string::npos ? "" : body.substr(q1 + 1, q2 - q1 - 1);
}

ssize_t read_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                nghttp2_data_source* src, void*) {
  auto* s = static_cast<Stream*>(src->ptr);
  const size_t n = std::min(length, s->out.size() - s->off);
  std::memcpy(buf, s->out.data() + s->off, n);
  s->off += n;
  if (s->off == s->out.size() && s->eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  } else if (n == 0) {
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

void respond(Conn* c, Stream* s, const std::string& content_type) {
  const std::string conn_index = std::to_string(c->index);
  nghttp2_nv nva[] = {
      {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"content-type", (uint8_t*)content_type.data(), 12, content_type.size(),
       NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"x-h2-conn", (uint8_t*)conn_index.data(), 9, conn_index.size(),
       NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_data_provider prd{};
  prd.source.ptr = s;
  prd.read_callback = read_cb;
  nghttp2_submit_response(c->session, s->id, nva, 3, &prd);
}

void start(Conn* c, Stream* s) {
  s->started = true;
  if (s->path == "/stats") {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "{\"connections\":%d,\"requests\":%d,\"max_concurrent\":%zu,\"aborted\":%d,",
                  stats.connections, stats.requests, stats.max_concurrent, stats.aborted);
    s->out = std::string(buf) + "\"last_headers\":" + stats.last_headers + "}";
    s->eof = true;
    respond(c, s, "application/json");
    return;
  }
  ++stats.requests;
  stats.last_headers = "{" + s->headers + "}";
  s->model = json_string_field(s->body, "model");
  s->sse = s->body.find("\"stream\":true") != std::string::npos ||
           s->body.find("\"stream\": true") != std::string::npos;
  if (!s->sse) {
    s->out = "{\"id\":\"cmpl-h2c\",\"object\":\"text_completion\",\"model\":\"" + s->model +
             "\",\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":\"stop\"}],"
             "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}";
    s->eof = true;
    respond(c, s, "application/json");
    return;
  }
  s->remaining = opt.tokens;
  s->next = Clock::now();
  respond(c, s, "text/event-stream");
}

void tick(Conn* c, Clock::time_point now, Clock::time_point* wake) {
  for (auto& [id, sp] : c->streams) {
    Stream* s = sp.get();
    if (!s->complete) continue;
    if (!s->started) {
      if (now < s->start_at) {
        *wake = std::min(*wake, s->start_at);
        continue;
      }
      start(c, s);
    }
    bool changed = false;
    while (s->sse && s->remaining > 0 && now >= s->next) {
      const int i = opt.tokens - s->remaining;
      s->out += "data: {\"id\":\"cmpl-h2c\",\"object\":\"text_completion\",\"model\":\"" +
                s->model + "\",\"choices\":[{\"index\":0,\"text\":\" t" + std::to_string(i) +
                "\"}]}\n\n";
      --s->remaining;
      s->next += std::chrono::milliseconds(opt.itl_ms);
      if (s->remaining == 0) {
        s->out += "data: [DONE]\n\n";
        s->eof = true;
      }
      changed = true;
    }
    if (s->sse && s->remaining > 0) *wake = std::min(*wake, s->next);
    if (changed && s->deferred) {
      s->deferred = false;
      nghttp2_session_resume_data(c->session, s->id);
    }
  }
}

int on_begin_headers(nghttp2_session* session, const nghttp2_frame* f, void* ud) {
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* c = static_cast<Conn*>(ud);
  auto s = std::make_unique<Stream>();
  s->id = f->hd.stream_id;
  nghttp2_session_set_stream_user_data(session, s->id, s.get());
  c->streams[s->id] = std::move(s);
  stats.max_concurrent = std::max(stats.max_concurrent, c->streams.size());
  return 0;
}

int on_header(nghttp2_session* session, const nghttp2_frame* f, const uint8_t* name, size_t nl,
              const uint8_t* value, size_t vl, uint8_t, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, f->hd.stream_id));
  if (s == nullptr) return 0;
  const std::string n(reinterpret_cast<const char*>(name), nl);
  const std::string v(reinterpret_cast<const char*>(value), vl);
  if (n == ":method") s->method = v;
  if (n == ":path") s->path = v;
  if (!n.empty() && n[0] != ':' && v.find_first_of("\"\\") == std::string::npos)
    s->headers += (s->headers.empty() ? "\"" : ",\"") + n + "\":\"" + v + "\"";
  return 0;
}

int on_data(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (s != nullptr) s->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int on_frame_recv(nghttp2_session* session, const nghttp2_frame* f, void*) {
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, f->hd.stream_id));
    if (s != nullptr) {
      s->complete = true;
      s->start_at = Clock::now() + std::chrono::milliseconds(opt.delay_ms);
    }
  }
  return 0;
}

int on_close(nghttp2_session*, int32_t id, uint32_t error_code, void* ud) {
  auto* c = static_cast<Conn*>(ud);
  if (error_code != NGHTTP2_NO_ERROR) ++stats.aborted;
  c->streams.erase(id);
  return 0;
}

std::unique_ptr<Conn> make_conn(int fd) {
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->index = ++stats.connections;
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  nghttp2_session_server_new(&c->session, cbs, c.get());
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, opt.max_streams}};
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--max-streams") opt.max_streams = static_cast<uint32_t>(v);
    if (a == "--delay-ms") opt.delay_ms = v;
    if (a == "--tokens") opt.tokens = v;
    if (a == "--itl-ms") opt.itl_ms = v;
  }
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 128)) {
    std::perror("h2c_test_server: bind/listen");
    return 2;
  }
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("h2c-test-server listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  std::vector<std::unique_ptr<Conn>> conns;
  for (;;) {
    const auto now = Clock::now();
    auto wake = now + std::chrono::seconds(1);
    for (auto& c : conns) {
      tick(c.get(), now, &wake);
      for (;;) {
        const uint8_t* data = nullptr;
        const ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n <= 0) {
          if (n < 0) c->dead = true;
          break;
        }
        c->wbuf.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      }
      while (!c->wbuf.empty()) {
        const ssize_t w = ::send(c->fd, c->wbuf.data(), c->wbuf.size(), MSG_NOSIGNAL);
        if (w <= 0) break;
        c->wbuf.erase(0, static_cast<size_t>(w));
      }
      if (nghttp2_session_want_read(c->session) == 0 &&
          nghttp2_session_want_write(c->session) == 0 && c->wbuf.empty())
        c->dead = true;
    }
    for (auto& c : conns) {
      if (!c->dead) continue;
      // Streams still open when the connection goes: the client went away.
      stats.aborted += static_cast<int>(c->streams.size());
      c->streams.clear();
      nghttp2_session_del(c->session);
      ::close(c->fd);
    }
    std::erase_if(conns, [](const auto& c) { return c->dead; });

    std::vector<pollfd> fds{{lfd, POLLIN, 0}};
    for (auto& c : conns)
      fds.push_back({c->fd, static_cast<short>(POLLIN | (c->wbuf.empty() ? 0 : POLLOUT)), 0});
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now());
    ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, ms.count())));
    if (fds[0].revents & POLLIN) {
      const int fd = ::accept(lfd, nullptr, nullptr);
      if (fd >= 0) {
        ::fcntl(fd, F_SETFL, O_NONBLOCK);
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns.push_back(make_conn(fd));
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Conn* c = conns[i - 1].get();
      char buf[16384];
      const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c->dead = true;
        continue;
      }
      if (nghttp2_session_mem_recv(c->session, reinterpret_cast<uint8_t*>(buf),
                                   static_cast<size_t>(n)) < 0)
        c->dead = true;
    }
  }
}
