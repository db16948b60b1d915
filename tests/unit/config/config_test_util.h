#pragma once
// Helpers shared by the config unit tests.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"

namespace infergate::config::testing {

inline const std::string kFixtures = std::string(INFERGATE_TEST_FIXTURES) + "/config";

// A minimal valid ProxyConfig; tests append GIE documents (and replace it when testing it).
inline const std::string kProxy = R"(apiVersion: infergate.io/v1alpha1
kind: ProxyConfig
metadata: {name: test}
spec:
  listeners: [{address: "127.0.0.1:0"}]
  admin: {address: "127.0.0.1:0"}
  endpoints:
  - {name: e0, address: "10.0.0.1", labels: {app: llama}}
)";

// A v1 pool that selects kProxy's endpoint.
inline const std::string kPool = R"(---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}]
)";

inline std::vector<std::string> formatted(const LoadResult& r, Severity severity) {
  std::vector<std::string> out;
  for (const auto& d : r.diagnostics)
    if (d.severity == severity) out.push_back(d.format());
  return out;
}
inline std::vector<std::string> errors(const LoadResult& r) {
  return formatted(r, Severity::kError);
}
inline std::vector<std::string> warnings(const LoadResult& r) {
  return formatted(r, Severity::kWarning);
}
inline std::vector<std::string> infos(const LoadResult& r) {
  return formatted(r, Severity::kInfo);
}

// Whether one of `lines` contains `needle`.
inline bool contains(const std::vector<std::string>& lines, std::string_view needle) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(needle) != std::string::npos; });
}

inline std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// CHECK that one of `lines` contains `needle`, showing all of them when none does.
#define CHECK_HAS(lines, needle)                                                    \
  do {                                                                              \
    const auto& check_has_lines_ = (lines);                                         \
    CHECK_MESSAGE(::infergate::config::testing::contains(check_has_lines_, needle), \
                  ::infergate::config::testing::joined(check_has_lines_));          \
  } while (false)

// Every diagnostic, one per line, for failure messages.
inline std::string dump(const LoadResult& r) {
  std::string out;
  for (const auto& d : r.diagnostics) out += d.format() + "\n";
  return out;
}

// Loads text that must be valid; fails the test with every diagnostic otherwise.
inline SnapshotPtr load_ok(const std::string& text, const std::string& name = "test.yaml") {
  LoadResult r = load_string(text, name);
  INFO(dump(r));
  REQUIRE(r.ok());
  return r.snapshot;
}

// Loads text that must fail; returns the result for inspection.
inline LoadResult load_bad(const std::string& text, const std::string& name = "test.yaml") {
  LoadResult r = load_string(text, name);
  INFO(dump(r));
  CHECK_FALSE(r.ok());
  return r;
}

inline const ModelRoute* find_model(const Snapshot& s, std::string_view name) {
  for (const auto& m : s.models)
    if (m.model_name == name) return &m;
  return nullptr;
}

inline const InferenceObjective* find_objective(const Snapshot& s, std::string_view name) {
  for (const auto& o : s.objectives)
    if (o.name == name) return &o;
  return nullptr;
}

}  // namespace infergate::config::testing
