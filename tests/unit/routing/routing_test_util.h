#pragma once
// Hand-made endpoint snapshots for the routing tests.

#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "common/engine_metrics.h"
#include "routing/scheduling_types.h"

namespace infergate::routing::test {

// Owns the EngineMetrics the views point to (a deque: pointers stay valid as it grows).
class Fleet {
 public:
  // Adds an endpoint with fresh metrics; returns its index. key = index + 1.
  size_t add(double waiting, double kv, std::vector<std::string> running = {},
             std::vector<std::string> waiting_adapters = {}, int max_lora = 0) {
    EngineMetrics m;
    m.waiting = waiting;
    m.kv_cache_usage = kv;
    m.running_adapters = std::move(running);
    m.waiting_adapters = std::move(waiting_adapters);
    m.max_lora = max_lora;
    m.has_lora_info = max_lora > 0;
    m.block_size = 16;
    m.num_gpu_blocks = 10000;
    metrics_.push_back(std::move(m));
    EndpointView v;
    v.id = static_cast<uint32_t>(views_.size());
    v.key = views_.size() + 1;
    v.metrics = &metrics_.back();
    views_.push_back(v);
    return views_.size() - 1;
  }
  EngineMetrics& metrics(size_t i) { return metrics_[i]; }
  EndpointView& view(size_t i) { return views_[i]; }
  std::vector<EndpointView>& views() { return views_; }
  size_t size() const { return views_.size(); }

 private:
  std::deque<EngineMetrics> metrics_;
  std::vector<EndpointView> views_;
};

// A prompt of `bytes` bytes, deterministic in `seed`; `shared` leading bytes come from seed 0.
inline std::string make_prompt(size_t bytes, uint64_t seed, size_t shared = 0) {
  std::string s;
  s.reserve(bytes);
  uint64_t x = 0x243F6A8885A308D3ull;
  for (size_t i = 0; i < bytes; ++i) {
    if (i == shared) x ^= (seed + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s.push_back(static_cast<char>('a' + x % 26));
  }
  return s;
}

}  // namespace infergate::routing::test
