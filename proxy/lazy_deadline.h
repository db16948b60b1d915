#pragma once
// A deadline for the I/O of one connection that is cheap per operation. arm_for() records when
// the current operation must be over, disarm() says none is pending; the timer is armed only
// when there is none yet or the new deadline is earlier, and when it fires early (the deadline
// moved on) it re-arms itself for what is left. beast::tcp_stream instead inserts a timer wait
// into the timer queue and cancels it for every read and write. Fires `expire` once an armed
// deadline passes. Owned by one thread (the worker's); the timer's handler may outlive the
// owner, hence the shared state.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/asio.h"

namespace infergate::proxy {

class LazyDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  LazyDeadline(asio::any_io_executor ex, std::function<void()> expire)
      : s_(std::make_shared<State>(std::move(ex), std::move(expire))) {}
  LazyDeadline(const LazyDeadline&) = delete;
  LazyDeadline& operator=(const LazyDeadline&) = delete;
  ~LazyDeadline() {
    s_->stopped = true;
    s_->timer.cancel();
  }

  // The operation about to start must be over `d` from now.
  void arm_for(Clock::duration d) {
    State& s = *s_;
    s.deadline = Clock::now() + d;
    s.active = true;
    s.expired = false;
    if (!s.armed || s.deadline < s.timer_at) arm(s_);
  }
  // No operation is pending: nothing to expire (the timer, if armed, lapses when it fires).
  void disarm() { s_->active = false; }
  // An armed deadline passed (and `expire` ran) since the last arm_for().
  bool expired() const { return s_->expired; }

 private:
  struct State {
    State(asio::any_io_executor ex, std::function<void()> e)
        : timer(std::move(ex)), expire(std::move(e)) {}
    asio::steady_timer timer;
    std::function<void()> expire;
    Clock::time_point deadline{};
    Clock::time_point timer_at{};  // when the armed timer fires
    uint64_t generation = 0;       // of the pending wait; older waits are stale
    bool active = false;
    bool armed = false;
    bool expired = false;
    bool stopped = false;
  };

  static void arm(const std::shared_ptr<State>& s) {
    s->armed = true;
    s->timer_at = s->deadline;
    const uint64_t generation = ++s->generation;
    s->timer.expires_at(s->deadline);  // a pending wait completes as cancelled, and is stale
    s->timer.async_wait([s, generation](const error_code& ec) {
      if (generation != s->generation) return;
      s->armed = false;
      if (ec || s->stopped || !s->active) return;
      if (Clock::now() < s->deadline) {
        arm(s);  // moved on since: wait for the rest
        return;
      }
      s->active = false;
      s->expired = true;
      s->expire();
    });
  }

  std::shared_ptr<State> s_;
};

}  // namespace infergate::proxy
