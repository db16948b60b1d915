#pragma once
// Helpers shared by the metrics unit tests.

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/prometheus_parser.h"

namespace infergate::metrics::testing {

inline const std::string kFixtures = std::string(INFERGATE_TEST_FIXTURES) + "/metrics";

// The captures in tests/fixtures/metrics (see SOURCES.md there).
inline constexpr std::string_view kCaptureNames[] = {
    "openmetrics-example.txt",     "prometheus-text-format-example.txt",
    "sglang-metrics.txt",          "trtllm-triton-metrics-readme-sample.txt",
    "vllm-v0-metrics-excerpt.txt", "vllm-v0-metrics-full.txt",
};

inline std::string read_fixture(std::string_view name) {
  const std::string path = kFixtures + "/" + std::string(name);
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The samples named `name`, in order.
inline std::vector<const Sample*> samples_named(const ParsedMetrics& p, std::string_view name) {
  std::vector<const Sample*> out;
  for (const Sample& s : p.samples) {
    if (s.name == name) out.push_back(&s);
  }
  return out;
}

inline const Sample& only_sample(const ParsedMetrics& p, std::string_view name) {
  const auto found = samples_named(p, name);
  REQUIRE_MESSAGE(found.size() == 1, name << " found " << found.size() << " times");
  return *found.front();
}

}  // namespace infergate::metrics::testing
