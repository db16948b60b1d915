#pragma once
// The gateway's own Prometheus metrics (SPEC §8): GIE-compatible names for per-model request
// metrics plus infergate_* internals. One GatewayMetrics per process, shared by all threads.
//
// prometheus-cpp's Family::Add takes a lock, so the request path never calls it directly:
// every worker owns a MetricsCache that resolves a label set once and keeps the handles.
// Label values only come from bounded sets (configured model names, a capped number of
// pass-through names, fixed error codes), never from request ids or prompts.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace infergate::metrics {

// Handles for one (model_name, target_model_name, priority) label set.
struct ModelMetrics {
  prometheus::Counter* requests = nullptr;
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* input_tokens = nullptr;
  prometheus::Histogram* output_tokens = nullptr;
  prometheus::Histogram* ttft = nullptr;
  prometheus::Gauge* running = nullptr;  // by model_name only (shared between targets)
};

class GatewayMetrics {
 public:
  // Model names beyond this many distinct values are reported as "other".
  static constexpr size_t kMaxModelLabels = 256;

  GatewayMetrics();

  prometheus::Registry& registry() { return *registry_; }
  // Prometheus text exposition format 0.0.4 of everything registered.
  std::string serialize() const;

  // Thread-safe, takes a lock: call through MetricsCache, not per request.
  ModelMetrics model(std::string_view model, std::string_view target, int priority);
  prometheus::Counter* request_error(std::string_view model, std::string_view target,
                                     std::string_view error_code);

  // Gateway-wide handles, resolved at construction (lock-free to use).
  prometheus::Counter& http_requests(int status);                 // by status class 1xx..5xx
  prometheus::Counter& upstream_errors(std::string_view reason);  // connect|reset|timeout|protocol
  prometheus::Counter& upstream_retries() { return *retries_; }
  prometheus::Counter& connections_accepted() { return *connections_total_; }
  prometheus::Gauge& connections_active() { return *connections_active_; }
  prometheus::Counter& client_aborts() { return *client_aborts_; }
  prometheus::Family<prometheus::Gauge>& pool_ready_pods() { return *pool_ready_pods_; }
  prometheus::Family<prometheus::Counter>& config_reloads() { return *config_reloads_; }
  prometheus::Family<prometheus::Gauge>& pool_average_kv_cache() { return *pool_avg_kv_; }
  // infergate_scheduling_decisions_total{pool, reason}: why each pick was made (reasons are
  // routing's bounded set). Takes a lock: through MetricsCache.
  prometheus::Counter* scheduling_decision(std::string_view pool, std::string_view reason);
  // infergate_shed_requests_total{pool, reason}: 429/503 from admission (saturated,
  // queue_full, queue_timeout). Takes a lock: through MetricsCache.
  prometheus::Counter* shed(std::string_view pool, std::string_view reason);
  prometheus::Family<prometheus::Gauge>& pool_average_queue() { return *pool_avg_queue_; }

 private:
  std::string bounded_model_label(std::string_view model);  // requires mu_

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;
  std::unordered_set<std::string> model_labels_;

  prometheus::Family<prometheus::Counter>* request_total_;
  prometheus::Family<prometheus::Counter>* request_error_total_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Family<prometheus::Histogram>* input_tokens_;
  prometheus::Family<prometheus::Histogram>* output_tokens_;
  prometheus::Family<prometheus::Histogram>* ttft_;
  prometheus::Family<prometheus::Gauge>* running_requests_;
  prometheus::Family<prometheus::Gauge>* pool_ready_pods_;
  prometheus::Family<prometheus::Counter>* config_reloads_;
  prometheus::Family<prometheus::Gauge>* pool_avg_kv_;
  prometheus::Family<prometheus::Counter>* scheduling_decisions_;
  prometheus::Family<prometheus::Counter>* shed_;
  prometheus::Family<prometheus::Gauge>* pool_avg_queue_;

  prometheus::Counter* http_by_class_[6] = {};
  prometheus::Counter* upstream_connect_;
  prometheus::Counter* upstream_reset_;
  prometheus::Counter* upstream_timeout_;
  prometheus::Counter* upstream_protocol_;
  prometheus::Counter* retries_;
  prometheus::Counter* connections_total_;
  prometheus::Gauge* connections_active_;
  prometheus::Counter* client_aborts_;
};

// Per-thread cache of label-set handles: the request path's only way into GatewayMetrics.
// Not thread-safe (one per worker). Bounded: past kMaxEntries new label sets share "other".
class MetricsCache {
 public:
  static constexpr size_t kMaxEntries = 1024;
  explicit MetricsCache(GatewayMetrics& metrics) : metrics_(metrics) {}

  const ModelMetrics& model(std::string_view model, std::string_view target, int priority);
  prometheus::Counter& request_error(std::string_view model, std::string_view target,
                                     std::string_view error_code);
  prometheus::Counter& scheduling_decision(std::string_view pool, std::string_view reason);
  prometheus::Counter& shed(std::string_view pool, std::string_view reason);
  GatewayMetrics& gateway() { return metrics_; }

 private:
  // Heterogeneous lookup: find() takes a string_view, so a hit allocates nothing.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <typename V>
  using Map = std::unordered_map<std::string, V, Hash, std::equal_to<>>;

  std::string_view key(std::string_view a, std::string_view b, std::string_view c);
  template <typename M, typename Make>
  auto& lookup(M& map, std::string_view a, std::string_view b, std::string_view c, Make&& make);

  GatewayMetrics& metrics_;
  std::string scratch_;  // key buffer, reused
  Map<ModelMetrics> models_;
  Map<prometheus::Counter*> errors_;
  Map<prometheus::Counter*> decisions_;  // pool and reason: bounded
  Map<prometheus::Counter*> shed_;
};

}  // namespace infergate::metrics
