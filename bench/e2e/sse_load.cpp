// sse_load: N concurrent streaming chat completions over HTTP/1.1, every SSE event timestamped on
// arrival. The load client of the "1,000 concurrent SSE streams" point of bench/e2e/dataplane.py
// (docs/benchmarks.md, "Data-plane cost").
//
// One thread, one io_context (epoll). It connects all N sockets first, then sends the N requests
// back to back (so they reach the backend as one burst and the backend admits them together),
// then reads every response as it comes: the HTTP head, the chunked framing and the SSE lines are
// parsed incrementally, and each `data:` line is stamped with the steady-clock time of the read
// that completed it. Output (stdout): one JSON object with the per-stream arrival times of every
// event relative to that stream's send time, in microseconds, and the counts of what failed.
//
//   sse_load --port 8000 --streams 1000 --max-tokens 50 [--host 127.0.0.1] [--model NAME]
//            [--path /v1/chat/completions] [--timeout-s 120]
//
// Exit status: 0 when every stream completed (200, [DONE], end of the chunked body), 1 otherwise
// (the JSON still says what happened), 2 on bad arguments.

#include <boost/asio.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int streams = 1;
  int max_tokens = 16;
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  std::string path = "/v1/chat/completions";
  double timeout_s = 120;
};

int64_t ns_since(Clock::time_point origin, Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - origin).count();
}

enum class Failure { kNone, kConnect, kWrite, kStatus, kFraming, kEof, kTimeout };

const char* failure_name(Failure f) {
  switch (f) {
    case Failure::kNone:
      return "none";
    case Failure::kConnect:
      return "connect";
    case Failure::kWrite:
      return "write";
    case Failure::kStatus:
      return "status";
    case Failure::kFraming:
      return "framing";
    case Failure::kEof:
      return "eof";
    case Failure::kTimeout:
      return "timeout";
  }
  return "?";
}

// One streaming request on its own connection, parsed as the bytes arrive.
class Stream {
 public:
  Stream(asio::io_context& io, int index) : socket_(io), index_(index) {}

  tcp::socket& socket() { return socket_; }
  bool finished() const { return finished_; }
  bool completed() const { return finished_ && failure_ == Failure::kNone; }
  Failure failure() const { return failure_; }
  const std::string& detail() const { return detail_; }
  Clock::time_point sent_at() const { return sent_at_; }
  const std::vector<int64_t>& events_ns() const { return events_ns_; }
  int index() const { return index_; }

  void fail(Failure f, std::string detail) {
    if (finished_) return;
    failure_ = f;
    detail_ = std::move(detail);
    finish();
  }

  // Sends the request synchronously (a few hundred bytes: the socket buffer takes them at once).
  bool send(std::string_view request) {
    boost::system::error_code ec;
    sent_at_ = Clock::now();
    asio::write(socket_, asio::buffer(request.data(), request.size()), ec);
    if (ec) {
      fail(Failure::kWrite, ec.message());
      return false;
    }
    return true;
  }

  template <typename Done>
  void read(Done done) {
    socket_.async_read_some(
        asio::buffer(buf_), [this, done](const boost::system::error_code& ec, size_t n) {
          const Clock::time_point now = Clock::now();
          if (n > 0) feed(std::string_view(buf_, n), ns_since(sent_at_, now));
          if (!finished_ && ec) {
            // A close-delimited body ends at EOF; anything else is a stream cut short.
            if (ec == asio::error::eof && state_ == State::kRawBody && done_seen_) {
              finish();
            } else {
              fail(Failure::kEof, ec.message());
            }
          }
          if (finished_) {
            done(*this);
            return;
          }
          read(done);
        });
  }

 private:
  enum class State { kHead, kChunkSize, kChunkData, kChunkCrlf, kTrailer, kRawBody, kEnd };

  void finish() {
    finished_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  void feed(std::string_view data, int64_t t_ns) {
    while (!data.empty() && !finished_) {
      switch (state_) {
        case State::kHead: {
          const size_t before = head_.size();
          head_.append(data);
          const size_t end = head_.find("\r\n\r\n");
          if (end == std::string::npos) {
            if (head_.size() > 65536) fail(Failure::kFraming, "response head too large");
            return;
          }
          data.remove_prefix(end + 4 - before);
          if (!parse_head(std::string_view(head_).substr(0, end + 2))) return;
          break;
        }
        case State::kChunkSize: {
          if (!take_line(data)) return;
          const std::string_view hex = std::string_view(line_).substr(0, line_.find(';'));
          uint64_t size = 0;
          const auto [p, err] = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
          if (err != std::errc() || p != hex.data() + hex.size()) {
            fail(Failure::kFraming, "bad chunk size '" + line_ + "'");
            return;
          }
          line_.clear();
          chunk_left_ = size;
          state_ = size == 0 ? State::kTrailer : State::kChunkData;
          break;
        }
        case State::kChunkData: {
          const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_left_, data.size()));
          body(data.substr(0, n), t_ns);
          data.remove_prefix(n);
          chunk_left_ -= n;
          if (chunk_left_ == 0) state_ = State::kChunkCrlf;
          break;
        }
        case State::kChunkCrlf: {
          const size_t nl = data.find('\n');
          if (nl == std::string_view::npos) return;
          data.remove_prefix(nl + 1);
          state_ = State::kChunkSize;
          break;
        }
        case State::kTrailer: {
          // Trailer lines until an empty one (normally just the CRLF after "0").
          if (!take_line(data)) return;
          const bool empty = line_.empty();
          line_.clear();
          if (!empty) break;
          if (!done_seen_) {
            fail(Failure::kFraming, "body ended without data: [DONE]");
          } else {
            state_ = State::kEnd;
            finish();
          }
          return;
        }
        case State::kRawBody:
          body(data, t_ns);
          return;
        case State::kEnd:
          return;
      }
    }
  }

  bool parse_head(std::string_view head) {
    // "HTTP/1.1 200 OK\r\n" then header lines.
    const size_t eol = head.find("\r\n");
    const std::string_view status_line = head.substr(0, eol);
    if (status_line.size() < 12 || status_line.substr(9, 3) != "200") {
      fail(Failure::kStatus, std::string(status_line));
      return false;
    }
    bool chunked = false;
    size_t pos = eol + 2;
    while (pos < head.size()) {
      const size_t next = head.find("\r\n", pos);
      const std::string_view line = head.substr(pos, next - pos);
      pos = next == std::string_view::npos ? head.size() : next + 2;
      constexpr std::string_view kTe = "transfer-encoding:";
      if (line.size() >= kTe.size()) {
        std::string lower(line);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (lower.starts_with(kTe) && lower.find("chunked") != std::string::npos) chunked = true;
      }
    }
    state_ = chunked ? State::kChunkSize : State::kRawBody;
    head_.clear();
    head_.shrink_to_fit();
    return true;
  }

  // Decoded body bytes: SSE lines. An event is stamped when its `data:` line is complete.
  void body(std::string_view data, int64_t t_ns) {
    while (!data.empty()) {
      const size_t nl = data.find('\n');
      if (nl == std::string_view::npos) {
        sse_line_.append(data);
        return;
      }
      std::string_view line = data.substr(0, nl);
      if (!sse_line_.empty()) {
        sse_line_.append(line);
        line = sse_line_;
      }
      if (line.starts_with("data:")) {
        events_ns_.push_back(t_ns);
        std::string_view payload = line.substr(5);
        if (payload.starts_with(' ')) payload.remove_prefix(1);
        if (!payload.empty() && payload.back() == '\r') payload.remove_suffix(1);
        if (payload == "[DONE]") done_seen_ = true;
      }
      sse_line_.clear();
      data.remove_prefix(nl + 1);
    }
  }

  tcp::socket socket_;
  int index_;
  char buf_[16384];
  State state_ = State::kHead;
  std::string head_;
  // Moves the bytes up to the next LF from `data` into line_ (without the CR LF); false when
  // the line is not complete yet (what there was is kept in line_).
  bool take_line(std::string_view& data) {
    const size_t nl = data.find('\n');
    line_.append(data.substr(0, nl));
    if (nl == std::string_view::npos) return false;
    data.remove_prefix(nl + 1);
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    return true;
  }

  std::string line_;
  std::string sse_line_;
  uint64_t chunk_left_ = 0;
  bool done_seen_ = false;
  bool finished_ = false;
  Failure failure_ = Failure::kNone;
  std::string detail_;
  Clock::time_point sent_at_{};
  std::vector<int64_t> events_ns_;
};

std::string json_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out.append(esc);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void usage() {
  std::fputs(
      "usage: sse_load --port PORT [--host 127.0.0.1] [--streams N] [--max-tokens K]\n"
      "                [--model NAME] [--path /v1/chat/completions] [--timeout-s S]\n"
      "N concurrent streaming chat completions (stream, ignore_eos), one per HTTP/1.1 connection;\n"
      "prints JSON with each SSE event's arrival time (us) relative to its request's send time.\n",
      stderr);
}

bool parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") return false;
    if (i + 1 >= argc) return false;
    const std::string_view v = argv[++i];
    const auto to_int = [&](int64_t lo, int64_t hi, int64_t* out) {
      const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
      return ec == std::errc() && p == v.data() + v.size() && *out >= lo && *out <= hi;
    };
    int64_t n = 0;
    if (arg == "--host") {
      o->host = v;
    } else if (arg == "--port" && to_int(1, 65535, &n)) {
      o->port = static_cast<uint16_t>(n);
    } else if (arg == "--streams" && to_int(1, 100000, &n)) {
      o->streams = static_cast<int>(n);
    } else if (arg == "--max-tokens" && to_int(1, 1000000, &n)) {
      o->max_tokens = static_cast<int>(n);
    } else if (arg == "--model") {
      o->model = v;
    } else if (arg == "--path") {
      o->path = v;
    } else if (arg == "--timeout-s" && to_int(1, 86400, &n)) {
      o->timeout_s = static_cast<double>(n);
    } else {
      return false;
    }
  }
  return o->port != 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse_args(argc, argv, &opt)) {
    usage();
    return 2;
  }
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(opt.host, ec);
  if (ec) {
    std::fprintf(stderr, "sse_load: --host must be an IP address: %s\n", opt.host.c_str());
    return 2;
  }
  const tcp::endpoint endpoint(address, opt.port);

  const std::string body = "{\"model\":\"" + json_escape(opt.model) +
                           "\",\"stream\":true,\"max_tokens\":" + std::to_string(opt.max_tokens) +
                           ",\"ignore_eos\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"Tell me a story.\"}]}";
  const std::string request = "POST " + opt.path + " HTTP/1.1\r\nHost: " + opt.host + ":" +
                              std::to_string(opt.port) +
                              "\r\nContent-Type: application/json\r\nAccept: text/event-stream"
                              "\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;

  asio::io_context io(1);
  std::vector<std::unique_ptr<Stream>> streams;
  streams.reserve(static_cast<size_t>(opt.streams));
  for (int i = 0; i < opt.streams; ++i) streams.push_back(std::make_unique<Stream>(io, i));

  const double cpu0 = cpu_seconds();
  const Clock::time_point t_start = Clock::now();
  Clock::time_point t_connected{};
  Clock::time_point t_sent{};
  Clock::time_point t_first_send{};
  int pending = opt.streams;
  bool timed_out = false;

  asio::steady_timer deadline(io);
  deadline.expires_after(std::chrono::milliseconds(static_cast<int64_t>(opt.timeout_s * 1000)));
  deadline.async_wait([&](const boost::system::error_code& e) {
    if (e) return;
    timed_out = true;
    for (auto& s : streams) s->fail(Failure::kTimeout, "deadline");
  });

  const auto on_stream_done = [&](Stream&) {
    if (--pending == 0) deadline.cancel();
  };

  // Once every connect attempt is over: send all requests back to back, then read them all.
  const auto send_all = [&] {
    t_connected = Clock::now();
    t_first_send = t_connected;
    for (auto& s : streams) {
      if (s->finished()) continue;
      if (s->send(request)) {
        s->read(on_stream_done);
      } else {
        on_stream_done(*s);
      }
    }
    t_sent = Clock::now();
  };

  int connecting = opt.streams;
  for (auto& sp : streams) {
    Stream* s = sp.get();
    s->socket().async_connect(endpoint, [&, s](const boost::system::error_code& e) {
      if (e) {
        s->fail(Failure::kConnect, e.message());
        on_stream_done(*s);
      } else {
        boost::system::error_code ignored;
        s->socket().set_option(tcp::no_delay(true), ignored);
      }
      if (--connecting == 0 && !timed_out) send_all();
    });
  }
  io.run();
  const Clock::time_point t_end = Clock::now();
  const double cpu = cpu_seconds() - cpu0;

  // Report.
  int completed = 0;
  int counts[7] = {};
  std::string first_error;
  for (const auto& s : streams) {
    if (s->completed()) {
      ++completed;
    } else {
      ++counts[static_cast<int>(s->failure())];
      if (first_error.empty()) {
        first_error = std::string(failure_name(s->failure())) + ": " + s->detail();
      }
    }
  }
  std::string out;
  out.reserve(static_cast<size_t>(opt.streams) * (static_cast<size_t>(opt.max_tokens) + 8) * 8);
  const auto ms = [](int64_t ns) { return std::to_string(static_cast<double>(ns) / 1e6); };
  out += "{\"streams\":" + std::to_string(opt.streams) +
         ",\"completed\":" + std::to_string(completed) + ",\"failed\":{";
  for (int f = 1; f < 7; ++f) {
    out += std::string(f > 1 ? "," : "") + "\"" + failure_name(static_cast<Failure>(f)) +
           "\":" + std::to_string(counts[f]);
  }
  out += "},\"first_error\":\"" + json_escape(first_error) + "\"";
  out += ",\"connect_ms\":" + ms(ns_since(t_start, t_connected));
  out += ",\"send_ms\":" + ms(ns_since(t_connected, t_sent));
  out += ",\"wall_ms\":" + ms(ns_since(t_start, t_end));
  out += ",\"client_cpu_ms\":" + std::to_string(cpu * 1000);
  // Per stream: send time relative to the first send, then each event's arrival relative to the
  // stream's own send time (us).
  out += ",\"send_offset_us\":[";
  for (size_t i = 0; i < streams.size(); ++i) {
    if (i) out += ',';
    const Stream& s = *streams[i];
    out += s.sent_at() == Clock::time_point{}
               ? std::string("null")
               : std::to_string(ns_since(t_first_send, s.sent_at()) / 1000);
  }
  out += "],\"events_us\":[";
  char num[24];
  for (size_t i = 0; i < streams.size(); ++i) {
    if (i) out += ',';
    out += '[';
    const auto& ev = streams[i]->events_ns();
    for (size_t k = 0; k < ev.size(); ++k) {
      if (k) out += ',';
      const auto [p, e] = std::to_chars(num, num + sizeof num, ev[k] / 1000);
      (void)e;
      out.append(num, p);
    }
    out += ']';
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return completed == opt.streams ? 0 : 1;
}
