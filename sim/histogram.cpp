#include "sim/histogram.h"

#include <algorithm>
#include <utility>

namespace infergate::sim {

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  // Prometheus buckets are "less than or equal": the first bound >= value takes it.
  const auto it = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  ++counts_[static_cast<size_t>(it - upper_bounds_.begin())];
  ++count_;
  sum_ += value;
}

std::vector<double> one_two_five_buckets(int64_t max_value) {
  std::vector<double> buckets;
  for (int64_t scale = 1; scale <= max_value; scale *= 10) {
    for (const int64_t mantissa : {1, 2, 5}) {
      const int64_t value = mantissa * scale;
      if (value > max_value) return buckets;
      buckets.push_back(static_cast<double>(value));
    }
  }
  return buckets;
}

}  // namespace infergate::sim
