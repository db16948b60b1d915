#include "discovery/backoff.h"

#include <algorithm>

namespace infergate::discovery {

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                 std::function<double()> uniform01)
    : initial_(std::max(initial, std::chrono::milliseconds(1))),
      max_(std::max(max, initial_)),
      uniform01_(std::move(uniform01)) {}

std::chrono::milliseconds Backoff::next() {
  auto d = initial_;
  for (int i = 0; i < attempt_ && d < max_; ++i) d *= 2;
  d = std::min(d, max_);
  if (attempt_ < 62) ++attempt_;
  const double u = std::clamp(uniform01_(), 0.0, 1.0);
  const auto half = d / 2;
  return half + std::chrono::milliseconds(
                    static_cast<int64_t>(static_cast<double>((d - half).count()) * u));
}

}  // namespace infergate::discovery
