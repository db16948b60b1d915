#pragma once
// The vocabulary of a scheduling decision: what the caller tells routing/ about each candidate
// endpoint and about the request, and what comes back. Plain data, no behaviour; shared by the
// Scheduler (scheduler.h), the SaturationDetector and the
// tests and benchmarks.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/engine_metrics.h"

namespace infergate::routing {

// What a decision knows of one candidate. Built by the caller per decision, cheaply: nothing
// here owns memory. `metrics` points into an immutable scrape snapshot that the caller keeps
// alive until the decision (and record_dispatch) returns.
struct EndpointView {
  uint32_t id = 0;        // caller's identifier, returned untouched in traces
  int64_t in_flight = 0;  // gateway's own in-flight requests to it (all workers, right now)
  bool ready = true;      // false: never picked by any profile
  // Stable identity of the endpoint for the prefix index (the proxy's EndpointRuntime::id). It
  // must stay the same for the endpoint's whole life and never be reused for another endpoint;
  // 0 and UINT64_MAX mean "not indexed" (the prefix scorer gives it 0).
  uint64_t key = 0;
  // The last scrape of the endpoint's /metrics; null when it was never scraped.
  const EngineMetrics* metrics = nullptr;
  // How old `metrics` is (now - time of the scrape), measured by the caller's clock.
  std::chrono::nanoseconds metrics_age{0};
  // Requests and prompt bytes the gateway sent to this endpoint after the scrape that produced
  // `metrics`. They correct the scraped queue and KV figures (bytes / bytesPerToken tokens) so
  // that a burst arriving between two scrapes does not all land on the pod that looked idlest.
  int64_t dispatched_since_scrape = 0;
  int64_t prompt_bytes_since_scrape = 0;
};

// Whether the request's model is a LoRA adapter. Only the `default` profile reads it; the GIE
// profiles always score LoRA affinity the way GIE does (on the target model name).
enum class LoraHint : uint8_t {
  kUnknown,    // infer: an adapter iff some candidate lists the model as running or waiting
  kBaseModel,  // the base model: LoRA affinity is not scored
  kAdapter,    // an adapter, even if no candidate has it loaded yet
};

// The request's features that a decision may use. Views into the request body: valid for the
// duration of the call.
struct RequestFeatures {
  std::string_view model;  // target model (after rewrite); also the LoRA adapter name
  int priority = 0;        // SPEC §3.4; < 0 is sheddable
  // Raw JSON bytes of "prompt" / "messages" / "input" (the value's span, quotes and brackets
  // included). Hashed for prefix affinity, after `tools`.
  std::string_view prompt;
  std::string_view tools;       // raw JSON of "tools" when present (rendered before the prompt)
  std::string_view cache_salt;  // vLLM's "cache_salt", when present (separates prefix caches)
  LoraHint lora = LoraHint::kUnknown;
};

enum class DecisionStatus : uint8_t {
  kPicked,      // `index` names the chosen candidate
  kNoEndpoint,  // no ready candidate (503, or FailOpen handling by the caller)
  kShed,        // the profile itself dropped the request (gie-legacy, sheddable, no capacity): 429
};

// Why the winner won: the label of the `scheduling_decision` counter. A bounded set; keep
// kDecisionReasonNames in sync.
enum class DecisionReason : uint8_t {
  kPrefixAffinity,   // the prefix-cache score separated the winner from the runner-up most
  kLoraAffinity,     // the LoRA-affinity score did
  kLeastQueue,       // the queue score did
  kLeastKvCache,     // the KV-cache score did
  kLeastInFlight,    // the in-flight score did
  kTieBreak,         // several candidates had the best score; drawn at random
  kSingleCandidate,  // only one candidate was left after the filters
  kRoundRobin,       // profile round-robin
  kRandom,           // profile random
  kLeastRequest,     // profile least-request
  kLegacyTree,       // profile gie-legacy: the v0.3 filter tree, then a random draw
  kNoReadyEndpoint,  // status kNoEndpoint
  kShed,             // status kShed
};
inline constexpr size_t kDecisionReasonCount = 13;
inline constexpr std::array<std::string_view, kDecisionReasonCount> kDecisionReasonNames = {
    "prefix_affinity", "lora_affinity",     "least_queue", "least_kv_cache", "least_in_flight",
    "tie_break",       "single_candidate",  "round_robin", "random",         "least_request",
    "legacy_tree",     "no_ready_endpoint", "shed"};
static_assert(static_cast<size_t>(DecisionReason::kShed) + 1 == kDecisionReasonCount);
inline std::string_view to_string(DecisionReason r) {
  return kDecisionReasonNames[static_cast<size_t>(r)];
}

struct Decision {
  DecisionStatus status = DecisionStatus::kNoEndpoint;
  size_t index = 0;  // into the candidates span, when status == kPicked
  DecisionReason reason = DecisionReason::kNoReadyEndpoint;
  // Every ready candidate was saturated or stale, so the saturation filter kept them all.
  bool saturated_fallback = false;
  // Prefix match of the winner, in blocks, out of the prompt's blocks (0/0 when not scored).
  uint32_t prefix_match_blocks = 0;
  uint32_t prefix_total_blocks = 0;

  bool picked() const { return status == DecisionStatus::kPicked; }
};

// ---- Explainability (optional; only filled when the caller passes a trace) ----

enum class Scorer : uint8_t { kQueue, kKvCache, kPrefix, kLora, kInFlight };
inline constexpr size_t kScorerCount = 5;
inline constexpr std::array<std::string_view, kScorerCount> kScorerNames = {
    "queue", "kv_cache", "prefix_cache", "lora_affinity", "in_flight"};

// Why a candidate was not considered further.
enum class FilterReason : uint8_t {
  kNone,                // kept
  kNotReady,            // EndpointView::ready == false
  kStaleMetrics,        // metrics missing or older than the staleness threshold
  kSaturatedQueue,      // estimated waiting >= queue limit
  kSaturatedKvCache,    // estimated KV usage >= KV limit
  kLegacyLowQueue,      // gie-legacy: waiting >= queueingThresholdLoRA
  kLegacyLoraAffinity,  // gie-legacy: not in the chosen LoRA group
  kLegacyLeastQueue,    // gie-legacy: outside the least-queue band
  kLegacyLeastKvCache,  // gie-legacy: outside the least-KV band
  kLegacyNoCapacity,    // gie-legacy: sheddable and queueing or over the KV threshold
};
inline constexpr std::array<std::string_view, 10> kFilterReasonNames = {"",
                                                                        "not_ready",
                                                                        "stale_metrics",
                                                                        "saturated_queue",
                                                                        "saturated_kv_cache",
                                                                        "legacy_low_queue",
                                                                        "legacy_lora_affinity",
                                                                        "legacy_least_queue",
                                                                        "legacy_least_kv_cache",
                                                                        "legacy_no_capacity"};
static_assert(static_cast<size_t>(FilterReason::kLegacyNoCapacity) + 1 ==
              kFilterReasonNames.size());
inline std::string_view to_string(FilterReason r) {
  return kFilterReasonNames[static_cast<size_t>(r)];
}

struct CandidateTrace {
  uint32_t id = 0;  // EndpointView::id
  FilterReason filtered = FilterReason::kNone;
  double est_waiting = 0;  // the waiting figure the profile used (corrected for `default`)
  double est_kv = 0;       // the KV usage figure the profile used
  uint32_t prefix_blocks = 0;
  // Per-scorer score in [0, 1] before weighting; NaN when the scorer did not run for it.
  std::array<double, kScorerCount> scores{};
  double total = 0;  // weighted sum (score-based profiles)
};

struct DecisionTrace {
  std::string_view profile;
  std::array<double, kScorerCount> weights{};
  uint32_t block_bytes = 0;                // prefix block size used, in prompt bytes
  uint32_t prefix_total_blocks = 0;        // blocks hashed from the prompt
  std::vector<CandidateTrace> candidates;  // one per EndpointView, same order
  std::vector<std::string_view> path;      // gie-legacy: filters traversed, in order
  Decision decision;

  void clear() {
    profile = {};
    weights = {};
    block_bytes = prefix_total_blocks = 0;
    candidates.clear();
    path.clear();
    decision = Decision{};
  }
  // JSON for the debug answer. `name_of(id)` gives each candidate's display name (escaped here).
  template <class NameOf>
  std::string to_json(NameOf&& name_of) const;
};

namespace detail {
void append_json_string(std::string& out, std::string_view s);
void append_json_number(std::string& out, double v);
}  // namespace detail

template <class NameOf>
std::string DecisionTrace::to_json(NameOf&& name_of) const {
  std::string out;
  out += "{\"profile\":";
  detail::append_json_string(out, profile);
  out += ",\"status\":";
  detail::append_json_string(out, decision.status == DecisionStatus::kPicked ? "picked"
                                  : decision.status == DecisionStatus::kShed ? "shed"
                                                                             : "no_endpoint");
  out += ",\"reason\":";
  detail::append_json_string(out, to_string(decision.reason));
  out += ",\"saturated_fallback\":";
  out += decision.saturated_fallback ? "true" : "false";
  if (decision.picked()) {
    out += ",\"winner\":";
    detail::append_json_string(out, name_of(candidates.at(decision.index).id));
  }
  out += ",\"prefix_block_bytes\":" + std::to_string(block_bytes);
  out += ",\"prefix_total_blocks\":" + std::to_string(prefix_total_blocks);
  out += ",\"weights\":{";
  for (size_t s = 0; s < kScorerCount; ++s) {
    if (s) out += ',';
    detail::append_json_string(out, kScorerNames[s]);
    out += ':';
    detail::append_json_number(out, weights[s]);
  }
  out += "}";
  if (!path.empty()) {
    out += ",\"path\":[";
    for (size_t i = 0; i < path.size(); ++i) {
      if (i) out += ',';
      detail::append_json_string(out, path[i]);
    }
    out += ']';
  }
  out += ",\"candidates\":[";
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    if (i) out += ',';
    out += "{\"endpoint\":";
    detail::append_json_string(out, name_of(c.id));
    if (c.filtered != FilterReason::kNone) {
      out += ",\"filtered\":";
      detail::append_json_string(out, to_string(c.filtered));
    }
    out += ",\"waiting\":";
    detail::append_json_number(out, c.est_waiting);
    out += ",\"kv_cache\":";
    detail::append_json_number(out, c.est_kv);
    out += ",\"prefix_blocks\":" + std::to_string(c.prefix_blocks);
    out += ",\"scores\":{";
    bool first = true;
    for (size_t s = 0; s < kScorerCount; ++s) {
      if (c.scores[s] != c.scores[s]) continue;  // NaN: not scored
      if (!first) out += ',';
      first = false;
      detail::append_json_string(out, kScorerNames[s]);
      out += ':';
      detail::append_json_number(out, c.scores[s]);
    }
    out += "},\"total\":";
    detail::append_json_number(out, c.total);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace infergate::routing
