#pragma once
// An inactivity deadline for a run of I/O operations that is cheap per operation: touch() only
// records the time; the timer is armed once and, when it fires early, re-arms itself for what
// is left. A per-operation deadline (beast::tcp_stream's) inserts a timer wait into the timer
// queue and cancels it for every read and write, which on a token stream is several wake-ups'
// worth of work per event. Fires `expire` once no touch() happened for `timeout`. Owned by one
// thread (the worker's); the timer's handler may outlive the owner, hence the shared state.

#include <chrono>
#include <functional>
#include <memory>

#include "proxy/asio.h"

namespace infergate::proxy {

class LazyDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  LazyDeadline(asio::any_io_executor ex, Clock::duration timeout, std::function<void()> expire)
      : s_(std::make_shared<State>(std::move(ex), timeout, std::move(expire))) {}
  LazyDeadline(const LazyDeadline&) = delete;
  LazyDeadline& operator=(const LazyDeadline&) = delete;
  ~LazyDeadline() {
    s_->stopped = true;
    s_->timer.cancel();
  }

  // An operation starts (or made progress): the deadline is `timeout` from now.
  void touch() {
    s_->last = Clock::now();
    if (!s_->armed && !s_->expired) arm(s_);
  }
  // The deadline passed (and `expire` ran).
  bool expired() const { return s_->expired; }

 private:
  struct State {
    State(asio::any_io_executor ex, Clock::duration t, std::function<void()> e)
        : timer(std::move(ex)), timeout(t), expire(std::move(e)) {}
    asio::steady_timer timer;
    Clock::duration timeout;
    std::function<void()> expire;
    Clock::time_point last{};
    bool armed = false;
    bool expired = false;
    bool stopped = false;
  };

  static void arm(const std::shared_ptr<State>& s) {
    s->armed = true;
    s->timer.expires_at(s->last + s->timeout);
    s->timer.async_wait([s](const error_code& ec) {
      s->armed = false;
      if (ec || s->stopped) return;
      if (Clock::now() < s->last + s->timeout) {
        arm(s);  // touched since: wait for the rest
        return;
      }
      s->expired = true;
      s->expire();
    });
  }

  std::shared_ptr<State> s_;
};

}  // namespace infergate::proxy
