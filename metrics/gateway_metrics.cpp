#include "metrics/gateway_metrics.h"

#include <prometheus/text_serializer.h>

#include <charconv>
#include <iterator>
#include <sstream>

namespace infergate::metrics {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// GIE's buckets for request durations (seconds) and token counts.
const Histogram::BucketBoundaries& duration_buckets() {
  static const Histogram::BucketBoundaries b{0.005, 0.025, 0.05, 0.1, 0.2,  0.4,  0.6,  0.8, 1.0,
                                             1.25,  1.5,   2,    3,   4,    5,    6,    8,   10,
                                             15,    20,    30,   45,  60,   120,  180,  240, 300,
                                             360,   480,   600,  900, 1200, 1800, 2700, 3600};
  return b;
}
const Histogram::BucketBoundaries& token_buckets() {
  static const Histogram::BucketBoundaries b{1,     8,      16,     32,     64,     128,   256,
                                             512,   1024,   2048,   4096,   8192,   16384, 32778,
                                             65536, 131072, 262144, 524288, 1048576};
  return b;
}
const Histogram::BucketBoundaries& ttft_buckets() {
  static const Histogram::BucketBoundaries b{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                             0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                             7.5,   10.0,  20.0, 40.0, 80.0};
  return b;
}

}  // namespace

GatewayMetrics::GatewayMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  request_total_ = &BuildCounter()
                        .Name("inference_objective_request_total")
                        .Help(
                            "Counter of inference requests broken out by model, target model "
                            "and priority.")
                        .Register(r);
  request_error_total_ = &BuildCounter()
                              .Name("inference_objective_request_error_total")
                              .Help(
                                  "Counter of inference request errors broken out by model, "
                                  "target model and error code.")
                              .Register(r);
  request_duration_ = &BuildHistogram()
                           .Name("inference_objective_request_duration_seconds")
                           .Help("Inference request latency distribution in seconds.")
                           .Register(r);
  input_tokens_ = &BuildHistogram()
                       .Name("inference_objective_input_tokens")
                       .Help("Inference request input token count distribution.")
                       .Register(r);
  output_tokens_ = &BuildHistogram()
                        .Name("inference_objective_output_tokens")
                        .Help("Inference response output token count distribution.")
                        .Register(r);
  running_requests_ = &BuildGauge()
                           .Name("inference_objective_running_requests")
                           .Help("Inference requests currently running, by model.")
                           .Register(r);
  pool_ready_pods_ = &BuildGauge()
                          .Name("inference_pool_ready_pods")
                          .Help("Number of ready endpoints in the inference pool.")
                          .Register(r);
  pool_avg_kv_ = &BuildGauge()
                      .Name("inference_pool_average_kv_cache_utilization")
                      .Help("The average KV cache utilization of the pool's endpoints (0..1).")
                      .Register(r);
  pool_avg_queue_ = &BuildGauge()
                         .Name("inference_pool_average_queue_size")
                         .Help(
                             "The average number of requests waiting in the pool's model "
                             "servers.")
                         .Register(r);
  scheduling_decisions_ = &BuildCounter()
                               .Name("infergate_scheduling_decisions_total")
                               .Help("Scheduling decisions by pool and by what decided them.")
                               .Register(r);
  shed_ = &BuildCounter()
               .Name("infergate_shed_requests_total")
               .Help(
                   "Requests refused by admission (saturated pool, full queue, queue "
                   "timeout), by pool and reason.")
               .Register(r);
  ttft_ = &BuildHistogram()
               .Name("infergate_time_to_first_token_seconds")
               .Help(
                   "Time from request receipt to the first response body byte sent to the "
                   "client, by model.")
               .Register(r);
  config_reloads_ = &BuildCounter()
                         .Name("infergate_config_reloads_total")
                         .Help("Configuration loads by result (success|failure).")
                         .Register(r);

  auto& http = BuildCounter()
                   .Name("infergate_http_requests_total")
                   .Help("Downstream HTTP requests answered, by status class.")
                   .Register(r);
  static const char* kClasses[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (int i = 0; i < 6; ++i) http_by_class_[i] = &http.Add({{"status_class", kClasses[i]}});

  auto& upstream = BuildCounter()
                       .Name("infergate_upstream_errors_total")
                       .Help("Upstream failures by reason (connect, reset, timeout, protocol).")
                       .Register(r);
  upstream_connect_ = &upstream.Add({{"reason", "connect"}});
  upstream_reset_ = &upstream.Add({{"reason", "reset"}});
  upstream_timeout_ = &upstream.Add({{"reason", "timeout"}});
  upstream_protocol_ = &upstream.Add({{"reason", "protocol"}});
  retries_ = &BuildCounter()
                  .Name("infergate_upstream_retries_total")
                  .Help("Requests retried on another endpoint before the first response byte.")
                  .Register(r)
                  .Add({});
  connections_total_ = &BuildCounter()
                            .Name("infergate_downstream_connections_total")
                            .Help("Downstream connections accepted.")
                            .Register(r)
                            .Add({});
  connections_active_ = &BuildGauge()
                             .Name("infergate_downstream_connections_active")
                             .Help("Downstream connections currently open.")
                             .Register(r)
                             .Add({});
  client_aborts_ = &BuildCounter()
                        .Name("infergate_client_aborts_total")
                        .Help("Requests whose client went away before the response finished.")
                        .Register(r)
                        .Add({});
}

std::string GatewayMetrics::serialize() const {
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  serializer.Serialize(out, registry_->Collect());
  return out.str();
}

std::string GatewayMetrics::bounded_model_label(std::string_view model) {
  std::string label(model);
  if (model_labels_.count(label)) return label;
  if (model_labels_.size() >= kMaxModelLabels) return "other";
  model_labels_.insert(label);
  return label;
}

ModelMetrics GatewayMetrics::model(std::string_view model, std::string_view target, int priority) {
  std::lock_guard lock(mu_);
  const std::string m = bounded_model_label(model);
  const std::string t = bounded_model_label(target);
  const prometheus::Labels with_target{{"model_name", m}, {"target_model_name", t}};
  ModelMetrics out;
  out.requests = &request_total_->Add(
      {{"model_name", m}, {"target_model_name", t}, {"priority", std::to_string(priority)}});
  out.duration = &request_duration_->Add(with_target, duration_buckets());
  out.input_tokens = &input_tokens_->Add(with_target, token_buckets());
  out.output_tokens = &output_tokens_->Add(with_target, token_buckets());
  out.ttft = &ttft_->Add({{"model_name", m}}, ttft_buckets());
  out.running = &running_requests_->Add({{"model_name", m}});
  return out;
}

prometheus::Counter* GatewayMetrics::request_error(std::string_view model, std::string_view target,
                                                   std::string_view error_code) {
  std::lock_guard lock(mu_);
  return &request_error_total_->Add({{"model_name", bounded_model_label(model)},
                                     {"target_model_name", bounded_model_label(target)},
                                     {"error_code", std::string(error_code)}});
}

prometheus::Counter* GatewayMetrics::scheduling_decision(std::string_view pool,
                                                         std::string_view reason) {
  std::lock_guard lock(mu_);
  return &scheduling_decisions_->Add(
      {{"pool", std::string(pool)}, {"reason", std::string(reason)}});
}

prometheus::Counter* GatewayMetrics::shed(std::string_view pool, std::string_view reason) {
  std::lock_guard lock(mu_);
  return &shed_->Add({{"pool", std::string(pool)}, {"reason", std::string(reason)}});
}

prometheus::Counter& GatewayMetrics::http_requests(int status) {
  int cls = status / 100;
  if (cls < 1 || cls > 5) cls = 0;
  return *http_by_class_[cls];
}

prometheus::Counter& GatewayMetrics::upstream_errors(std::string_view reason) {
  if (reason == "connect") return *upstream_connect_;
  if (reason == "timeout") return *upstream_timeout_;
  if (reason == "protocol") return *upstream_protocol_;
  return *upstream_reset_;
}

std::string_view MetricsCache::key(std::string_view a, std::string_view b, std::string_view c) {
  // Reuses one buffer: after warm-up a lookup allocates nothing (maps take string_view keys).
  scratch_.clear();
  scratch_.append(a).push_back('\0');
  scratch_.append(b).push_back('\0');
  scratch_.append(c);
  return scratch_;
}

template <typename M, typename Make>
auto& MetricsCache::lookup(M& map, std::string_view a, std::string_view b, std::string_view c,
                           Make&& make) {
  if (auto it = map.find(key(a, b, c)); it != map.end()) return it->second;
  if (map.size() >= kMaxEntries) {
    // Past the bound, new label sets share "other" (resolved once).
    if (auto it = map.find(key("other", "other", c)); it != map.end()) return it->second;
    return map.emplace(std::string(scratch_), make("other", "other")).first->second;
  }
  return map.emplace(std::string(scratch_), make(a, b)).first->second;
}

const ModelMetrics& MetricsCache::model(std::string_view model, std::string_view target,
                                        int priority) {
  char digits[16];
  const auto end = std::to_chars(std::begin(digits), std::end(digits), priority).ptr;
  return lookup(
      models_, model, target, std::string_view(digits, end - digits),
      [&](std::string_view m, std::string_view t) { return metrics_.model(m, t, priority); });
}

prometheus::Counter& MetricsCache::request_error(std::string_view model, std::string_view target,
                                                 std::string_view error_code) {
  return *lookup(errors_, model, target, error_code, [&](std::string_view m, std::string_view t) {
    return metrics_.request_error(m, t, error_code);
  });
}

prometheus::Counter& MetricsCache::scheduling_decision(std::string_view pool,
                                                       std::string_view reason) {
  return *lookup(decisions_, pool, reason, "", [&](std::string_view p, std::string_view r) {
    return metrics_.scheduling_decision(p, r);
  });
}

prometheus::Counter& MetricsCache::shed(std::string_view pool, std::string_view reason) {
  return *lookup(shed_, pool, reason, "",
                 [&](std::string_view p, std::string_view r) { return metrics_.shed(p, r); });
}

}  // namespace infergate::metrics
