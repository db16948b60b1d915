#pragma once
// Exponential backoff with jitter for reconnecting watches: attempt n waits a uniformly random
// time in [d/2, d] where d = min(max, initial * 2^n) ("equal jitter": never zero, never in
// lock-step with other gateways). Sans-I/O: the random source is injected.

#include <chrono>
#include <functional>

namespace infergate::discovery {

class Backoff {
 public:
  // `uniform01` returns a number in [0, 1).
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
          std::function<double()> uniform01);

  // The delay before the next attempt; each call doubles the base up to `max`.
  std::chrono::milliseconds next();
  // After a success: the next failure starts from `initial` again.
  void reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::function<double()> uniform01_;
  int attempt_ = 0;
};

}  // namespace infergate::discovery
