// MetricsCache: the request path's cached handles, bounded label sets.
#include <doctest/doctest.h>

#include <string>

#include "metrics/gateway_metrics.h"

using infergate::metrics::GatewayMetrics;
using infergate::metrics::MetricsCache;

TEST_CASE("MetricsCache returns the same handles for the same label set") {
  GatewayMetrics metrics;
  MetricsCache cache(metrics);
  const auto& a = cache.model("m", "t", 1);
  const auto& b = cache.model("m", "t", 1);
  CHECK(&a == &b);
  CHECK(cache.model("m", "t", -1).requests != a.requests);  // priority is a label
  CHECK(cache.model("m", "t2", 1).requests != a.requests);
  CHECK(&cache.request_error("m", "t", "x") == &cache.request_error("m", "t", "x"));
  CHECK(&cache.request_error("m", "t", "x") != &cache.request_error("m", "t", "y"));
  CHECK(&cache.scheduling_decision("p", "r") == &cache.scheduling_decision("p", "r"));
  CHECK(&cache.shed("p", "r") != &cache.shed("p", "q"));
  a.requests->Increment();
  CHECK(
      metrics.serialize().find("inference_objective_request_total{model_name=\"m\",priority=\"1\","
                               "target_model_name=\"t\"} 1") != std::string::npos);
}

TEST_CASE("MetricsCache is bounded: label sets past the bound share \"other\"") {
  GatewayMetrics metrics;
  MetricsCache cache(metrics);
  for (size_t i = 0; i < MetricsCache::kMaxEntries; ++i)
    cache.model("model-" + std::to_string(i), "t", 0);
  const auto& late = cache.model("late-model", "t", 0);
  const auto& later = cache.model("later-model", "t", 0);
  CHECK(late.requests == later.requests);
  late.requests->Increment();
  CHECK(metrics.serialize().find("model_name=\"other\"") != std::string::npos);
  // Known label sets keep their own handles.
  CHECK(cache.model("model-0", "t", 0).requests != late.requests);
}
