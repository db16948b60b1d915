#pragma once
// A Prometheus-style histogram with fixed upper bounds, as prometheus_client keeps it: one count
// per bucket (non-cumulative here; the exposition accumulates), a +Inf bucket, sum and count.
// Not thread-safe; observe() does not allocate.

#include <cstdint>
#include <span>
#include <vector>

namespace infergate::sim {

class Histogram {
 public:
  // `upper_bounds`: finite, strictly ascending; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double value);

  std::span<const double> upper_bounds() const { return upper_bounds_; }
  // Size upper_bounds().size() + 1; the last entry is the +Inf bucket.
  std::span<const uint64_t> bucket_counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0.0;
};

// vLLM's build_1_2_5_buckets(max_value): 1, 2, 5, 10, 20, 50, ... up to max_value inclusive.
std::vector<double> one_two_five_buckets(int64_t max_value);

}  // namespace infergate::sim
