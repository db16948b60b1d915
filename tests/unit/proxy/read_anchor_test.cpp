#include "proxy/read_anchor.h"

#include <sys/socket.h>

#include <doctest/doctest.h>

#include <chrono>
#include <optional>

using infergate::proxy::ReadAnchor;
namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// A connected loopback pair: `server` is the side under test, on `io`.
struct Pair {
  asio::io_context io;
  tcp::socket server{io};
  tcp::socket client{io};
  std::optional<error_code> fired;  // what the anchor completed with
  int calls = 0;

  Pair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }
  static void on_fired(void* self, const error_code& ec) {
    auto* p = static_cast<Pair*>(self);
    p->fired = ec;
    ++p->calls;
  }
  void send(std::string_view s) { asio::write(client, asio::buffer(s.data(), s.size())); }
  // recv() on the server without waiting: bytes read, 0 at EOF, -1 when empty (EAGAIN).
  ssize_t drain() {
    char buf[256];
    return ::recv(server.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
  }
  void run_for(std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
  }
  // Runs the event loop for `d` with nothing else to do (epoll_wait sees and drops the events
  // of sockets that have no operation queued).
  void spin(std::chrono::milliseconds d) {
    asio::steady_timer t(io, d);
    t.async_wait([](const error_code&) {});
    run_for(d + std::chrono::milliseconds(500));
  }
};

}  // namespace

TEST_CASE("A drained anchor completes when data arrives") {
  Pair p;
  ReadAnchor anchor(p.server, &Pair::on_fired, &p);
  CHECK(p.drain() == -1);
  anchor.arm(true);
  CHECK(anchor.pending());
  p.send("x");
  p.run_for(std::chrono::seconds(2));
  REQUIRE(p.fired.has_value());
  CHECK(!*p.fired);
  CHECK(!anchor.pending());
  CHECK(p.drain() == 1);
}

TEST_CASE("Data that arrives between the draining read and arm(true) is not lost") {
  Pair p;
  ReadAnchor anchor(p.server, &Pair::on_fired, &p);
  p.send("a");
  // In one handler, as the sessions do it: read until empty, then (before the event loop runs
  // again) more data arrives, then the anchor is armed as drained.
  asio::post(p.io, [&] {
    CHECK(p.drain() == 1);
    p.send("b");
    anchor.arm(true);
  });
  p.run_for(std::chrono::seconds(2));
  REQUIRE(p.fired.has_value());
  CHECK(!*p.fired);
  CHECK(p.drain() == 1);
}

TEST_CASE("arm(false) reports data that was already there") {
  Pair p;
  ReadAnchor anchor(p.server, &Pair::on_fired, &p);
  p.send("a");
  p.spin(std::chrono::milliseconds(50));  // the event loop sees (and drops) the edge
  anchor.arm(false);
  p.run_for(std::chrono::seconds(2));
  REQUIRE(p.fired.has_value());
  CHECK(!*p.fired);
}

TEST_CASE("arm(true) queues the wait without re-arming the descriptor") {
  if (!ReadAnchor::kWithoutSyscall) return;  // the fallback re-arms (and so would report)
  // The misuse the rule forbids, to show the syscall really is skipped: data whose edge the
  // event loop already consumed is not reported until something new arrives.
  Pair p;
  ReadAnchor anchor(p.server, &Pair::on_fired, &p);
  p.send("a");
  p.spin(std::chrono::milliseconds(50));
  anchor.arm(true);
  p.run_for(std::chrono::milliseconds(100));
  CHECK(!p.fired.has_value());
  p.send("b");
  p.run_for(std::chrono::seconds(2));
  REQUIRE(p.fired.has_value());
  CHECK(p.drain() == 2);
}

TEST_CASE("A peer's close completes the anchor, and so does cancel() (operation_aborted)") {
  {
    Pair p;
    ReadAnchor anchor(p.server, &Pair::on_fired, &p);
    anchor.arm(true);
    p.client.close();
    p.run_for(std::chrono::seconds(2));
    REQUIRE(p.fired.has_value());
    CHECK(!*p.fired);
    CHECK(p.drain() == 0);
  }
  {
    Pair p;
    ReadAnchor anchor(p.server, &Pair::on_fired, &p);
    anchor.arm(true);
    p.server.cancel();
    p.run_for(std::chrono::seconds(2));
    REQUIRE(p.fired.has_value());
    CHECK(*p.fired == asio::error::operation_aborted);
  }
}

TEST_CASE("An anchor that goes while its wait is pending is never called back") {
  Pair p;
  {
    ReadAnchor anchor(p.server, &Pair::on_fired, &p);
    anchor.arm(true);
    anchor.arm(true);  // already pending: no second wait
  }
  p.send("x");
  p.run_for(std::chrono::milliseconds(100));
  CHECK(p.calls == 0);
  CHECK(p.drain() == 1);
  ReadAnchor again(p.server, &Pair::on_fired, &p);
  again.arm(true);
  p.server.close();  // completes (and frees) whatever is still queued
  p.run_for(std::chrono::milliseconds(100));
  CHECK(p.calls == 1);
  CHECK(*p.fired == asio::error::operation_aborted);
}
