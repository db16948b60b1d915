#include "routing/saturation_detector.h"

#include <doctest/doctest.h>

#include "routing_test_util.h"

using namespace infergate::routing;
using infergate::routing::test::Fleet;

TEST_CASE("saturation: mean over endpoints of max(waiting / 5, kv / 0.8)") {
  Fleet f;
  f.add(5, 0.1);   // 1.0 (queue)
  f.add(0, 0.4);   // 0.5 (kv)
  f.add(1, 0.08);  // 0.2 (queue)
  SaturationDetector d;
  CHECK(d.saturation(f.views()) == doctest::Approx((1.0 + 0.5 + 0.2) / 3));
  CHECK_FALSE(d.saturated(f.views()));
  f.metrics(1).kv_cache_usage = 1.0;  // 1.25
  f.metrics(2).waiting = 4;           // 0.8
  CHECK(d.saturation(f.views()) == doctest::Approx((1.0 + 1.25 + 0.8) / 3));
  CHECK(d.saturated(f.views()));  // >= 1.0
}

TEST_CASE("saturation: exactly 1.0 is saturated; thresholds are tunable") {
  Fleet f;
  f.add(5, 0.0);
  SaturationDetector d;
  CHECK(d.saturation(f.views()) == doctest::Approx(1.0));
  CHECK(d.saturated(f.views()));
  SaturationConfig c;
  c.queue_depth_threshold = 10;
  c.kv_cache_threshold = 0.5;
  SaturationDetector tuned(c);
  CHECK(tuned.saturation(f.views()) == doctest::Approx(0.5));
  f.metrics(0).kv_cache_usage = 0.5;
  CHECK(tuned.saturation(f.views()) == doctest::Approx(1.0));
}

TEST_CASE("saturation: stale or missing metrics count as 1.0; no endpoint is saturated") {
  Fleet f;
  f.add(0, 0.0);
  f.add(0, 0.0);
  SaturationDetector d;
  CHECK(d.saturation(f.views()) == doctest::Approx(0.0));
  f.view(1).metrics_age = std::chrono::milliseconds(201);
  CHECK(d.saturation(f.views()) == doctest::Approx(0.5));
  f.view(0).metrics = nullptr;
  CHECK(d.saturation(f.views()) == doctest::Approx(1.0));
  CHECK(d.saturated(f.views()));
  f.view(1).metrics_age = std::chrono::milliseconds(200);  // at the threshold: still fresh
  CHECK(d.saturation(f.views()) == doctest::Approx(0.5));
  CHECK(d.saturation({}) == 1.0);
  // A scrape that did not report the load figures is as good as none.
  f.view(0).metrics = &f.metrics(0);
  f.metrics(0).missing = infergate::engine_field::kKvCacheUsage;
  CHECK(d.stale(f.view(0)));
  CHECK(d.saturation(f.views()) == doctest::Approx(0.5));
}

TEST_CASE("saturation: unready endpoints are not part of the pool; raw figures only") {
  Fleet f;
  f.add(0, 0.0);
  f.add(50, 1.0);
  f.view(1).ready = false;
  f.view(0).dispatched_since_scrape = 100;  // GIE reads the scrape as it is
  SaturationDetector d;
  CHECK(d.saturation(f.views()) == doctest::Approx(0.0));
}

TEST_CASE("saturation: a saturated pool sheds only priority < 0") {
  Fleet f;
  f.add(10, 0.9);
  f.add(6, 0.2);
  SaturationDetector d;
  REQUIRE(d.saturated(f.views()));
  CHECK(d.should_shed(f.views(), -1));
  CHECK(d.should_shed(f.views(), -100));
  CHECK_FALSE(d.should_shed(f.views(), 0));
  CHECK_FALSE(d.should_shed(f.views(), 1));
  f.metrics(0).waiting = 0;
  f.metrics(0).kv_cache_usage = 0;
  f.metrics(1).waiting = 0;
  CHECK_FALSE(d.should_shed(f.views(), -1));
}

TEST_CASE("saturation: the per-endpoint limit with headroom") {
  SaturationConfig c;
  c.headroom = 0.2;
  SaturationDetector d(c);
  CHECK(d.over_limit(5.9, 0.1) == FilterReason::kNone);
  CHECK(d.over_limit(6.0, 0.1) == FilterReason::kSaturatedQueue);
  CHECK(d.over_limit(0, 0.95) == FilterReason::kNone);
  CHECK(d.over_limit(0, 0.96) == FilterReason::kSaturatedKvCache);
}

TEST_CASE("saturation: prefixHeadroom raises the queue limit by the share of the prompt held") {
  SaturationConfig c;
  CHECK(c.prefix_headroom == 1.0);  // the default
  c.prefix_headroom = 1;            // queue limit 5 * (1 + share)
  SaturationDetector d(c);
  CHECK(d.over_limit(4.9, 0.1) == FilterReason::kNone);
  CHECK(d.over_limit(5.0, 0.1) == FilterReason::kSaturatedQueue);  // holds nothing: 5
  CHECK(d.over_limit(5.0, 0.1, 0.5) == FilterReason::kNone);       // holds half: 7.5
  CHECK(d.over_limit(7.5, 0.1, 0.5) == FilterReason::kSaturatedQueue);
  CHECK(d.over_limit(9.9, 0.1, 1.0) == FilterReason::kNone);  // holds it all: 10
  CHECK(d.over_limit(10, 0.1, 1.0) == FilterReason::kSaturatedQueue);
  CHECK(d.over_limit(0, 0.8, 1.0) == FilterReason::kSaturatedKvCache);  // KV limit unchanged
  c.headroom = 0.2;  // adds up: 5 * (1 + 0.2 + 1)
  SaturationDetector h(c);
  CHECK(h.over_limit(10.9, 0.1, 1.0) == FilterReason::kNone);
  CHECK(h.over_limit(11, 0.1, 1.0) == FilterReason::kSaturatedQueue);
  // Off (0, GIE's detector has no such term): a prefix changes nothing.
  SaturationConfig gie;
  gie.prefix_headroom = 0;
  SaturationDetector off(gie);
  CHECK(off.over_limit(5.0, 0.1, 1.0) == FilterReason::kSaturatedQueue);
}
