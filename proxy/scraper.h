#pragma once
// Scrapes every endpoint's Prometheus metrics (SPEC §7) on its own thread and io_context, one
// coroutine per endpoint with a keep-alive connection, and publishes an immutable
// MetricsSnapshot every interval. Workers only ever load() the snapshot: they never wait for a
// scrape and never lock.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/engine_metrics.h"
#include "proxy/asio.h"
#include "proxy/gateway_context.h"

namespace infergate::proxy {

// One endpoint's latest scrape. Immutable once published.
struct EndpointSample {
  EngineMetrics metrics;
  std::chrono::steady_clock::time_point scraped_at{};  // of the last successful scrape
  bool ok = false;        // the last scrape succeeded and reported waiting/running/kv
  std::string error;      // why the last scrape failed, when !ok
  uint64_t failures = 0;  // consecutive failed scrapes

  // Consecutive failed scrapes after which an endpoint counts as not ready: like a pod that
  // fails its readiness probe, its metrics endpoint is unreachable.
  static constexpr uint64_t kUnreadyAfterFailures = 3;
  bool ready() const { return ok || failures < kUnreadyAfterFailures; }
};

// Aligned with the RuntimeState of the same generation: pools[i][j] is the sample of
// state.pools[i].endpoints[j] (null before its first scrape).
struct MetricsSnapshot {
  uint64_t generation = 0;
  std::vector<std::vector<std::shared_ptr<const EndpointSample>>> pools;
};
using MetricsSnapshotPtr = std::shared_ptr<const MetricsSnapshot>;

class Scraper {
 public:
  explicit Scraper(GatewayContext& context);
  ~Scraper();
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  void start();  // spawns the thread
  void stop();   // thread-safe; joins

 private:
  struct Target;
  static awaitable<void> control_loop(Scraper* self);
  static awaitable<void> endpoint_loop(Scraper* self, std::shared_ptr<Target> target);
  void sync_targets(const RuntimeState& state);
  void publish(const RuntimeState& state);

  GatewayContext& context_;
  asio::io_context io_{1};
  std::thread thread_;
  std::unordered_map<uint64_t, std::shared_ptr<Target>> targets_;  // by EndpointRuntime::id
  prometheus::Counter* failures_counter_ = nullptr;
  prometheus::Histogram* duration_ = nullptr;
};

}  // namespace infergate::proxy
