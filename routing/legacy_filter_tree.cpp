#include "routing/legacy_filter_tree.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>

namespace infergate::routing {
namespace {

int64_t waiting_of(const EndpointView& e) {
  return e.metrics ? static_cast<int64_t>(e.metrics->waiting) : 0;
}
double kv_of(const EndpointView& e) {
  return e.metrics ? e.metrics->kv_cache_usage : 0.0;
}

bool has_adapter(const EndpointView& e, std::string_view model) {
  if (e.metrics == nullptr) return false;
  for (const auto& a : e.metrics->running_adapters)
    if (a == model) return true;
  for (const auto& a : e.metrics->waiting_adapters)
    if (a == model) return true;
  return false;
}

// v0.3 keeps running and waiting adapters in one set ("ActiveModels"); count distinct names.
size_t active_count(const EndpointView& e) {
  if (e.metrics == nullptr) return 0;
  const auto& run = e.metrics->running_adapters;
  size_t n = run.size();
  for (const auto& w : e.metrics->waiting_adapters)
    if (std::find(run.begin(), run.end(), w) == run.end()) ++n;
  return n;
}

class Walk {
 public:
  Walk(std::span<const EndpointView> c, DecisionTrace* t) : candidates_(c), trace_(t) {}

  void enter(std::string_view name) {
    if (trace_) trace_->path.push_back(name);
  }
  // Marks what `from` had and `to` lacks as removed by `why` (first removal wins).
  void removed(const std::vector<uint32_t>& from, const std::vector<uint32_t>& to,
               FilterReason why) {
    if (!trace_) return;
    for (uint32_t i : from) {
      if (std::find(to.begin(), to.end(), i) != to.end()) continue;
      auto& c = trace_->candidates[i];
      if (c.filtered == FilterReason::kNone) c.filtered = why;
    }
  }
  const EndpointView& at(uint32_t i) const { return candidates_[i]; }

 private:
  std::span<const EndpointView> candidates_;
  DecisionTrace* trace_;
};

// Each step writes its result into `out` and returns whether it "succeeded" (non-empty).
bool least_queuing(Walk& w, const std::vector<uint32_t>& in, std::vector<uint32_t>& out) {
  w.enter("least queuing");
  out.clear();
  if (in.empty()) return false;
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
  for (uint32_t i : in) {
    lo = std::min(lo, waiting_of(w.at(i)));
    hi = std::max(hi, waiting_of(w.at(i)));
  }
  const int64_t band = lo + (hi - lo) / static_cast<int64_t>(in.size());
  for (uint32_t i : in) {
    const int64_t q = waiting_of(w.at(i));
    if (q >= lo && q <= band) out.push_back(i);
  }
  w.removed(in, out, FilterReason::kLegacyLeastQueue);
  return !out.empty();
}

bool least_kv_cache(Walk& w, const std::vector<uint32_t>& in, std::vector<uint32_t>& out) {
  w.enter("least KV cache percent");
  out.clear();
  if (in.empty()) return false;
  double lo = std::numeric_limits<double>::max(), hi = 0;
  for (uint32_t i : in) {
    lo = std::min(lo, kv_of(w.at(i)));
    hi = std::max(hi, kv_of(w.at(i)));
  }
  const double band = lo + (hi - lo) / static_cast<double>(in.size());
  for (uint32_t i : in) {
    const double kv = kv_of(w.at(i));
    if (kv >= lo && kv <= band) out.push_back(i);
  }
  w.removed(in, out, FilterReason::kLegacyLeastKvCache);
  return !out.empty();
}

}  // namespace

bool LegacyFilterTree::run(std::span<const EndpointView> candidates, const RequestFeatures& request,
                           Rng& rng, std::vector<uint32_t>& set, std::vector<uint32_t>& scratch,
                           DecisionTrace* trace) const {
  Walk w(candidates, trace);
  auto& out = scratch;

  // A predicate step: on success the survivors replace `set`; on failure `set` stays.
  auto predicate = [&](std::string_view name, auto&& keep, FilterReason why) {
    w.enter(name);
    out.clear();
    for (uint32_t i : set)
      if (keep(w.at(i))) out.push_back(i);
    if (out.empty()) return false;
    w.removed(set, out, why);
    set.swap(out);
    return true;
  };
  auto band_step = [&](bool (*f)(Walk&, const std::vector<uint32_t>&, std::vector<uint32_t>&)) {
    if (f(w, set, out)) set.swap(out);
  };
  auto available = [&](const EndpointView& e) {
    return e.metrics != nullptr && !has_adapter(e, request.model) &&
           static_cast<int64_t>(active_count(e)) < e.metrics->max_lora;
  };
  auto lora_affinity = [&](std::string_view name) {
    w.enter(name);
    out.clear();
    size_t free_slots = 0;
    for (uint32_t i : set) {
      if (has_adapter(w.at(i), request.model)) {
        out.push_back(i);
      } else if (available(w.at(i))) {
        ++free_slots;
      }
    }
    bool use_affinity = !out.empty();
    if (use_affinity && free_slots > 0)
      use_affinity = rng.uniform() < config_.lora_affinity_threshold;
    if (!use_affinity) {
      out.clear();
      for (uint32_t i : set)
        if (available(w.at(i))) out.push_back(i);
    }
    if (out.empty()) return;  // nothing suitable: the next step gets the input
    w.removed(set, out, FilterReason::kLegacyLoraAffinity);
    set.swap(out);
  };

  if (critical(request)) {
    w.enter("critical request");
    const int64_t threshold = config_.queueing_threshold_lora;
    if (predicate(
            "low queueing filter", [&](const EndpointView& e) { return waiting_of(e) < threshold; },
            FilterReason::kLegacyLowQueue)) {
      lora_affinity("affinity LoRA");
      band_step(least_queuing);
      band_step(least_kv_cache);
    } else {
      band_step(least_queuing);
      lora_affinity("low cost LoRA");
      band_step(least_kv_cache);
    }
    return !set.empty();
  }
  w.enter("sheddable request");
  const int64_t q = config_.queue_threshold_critical;
  const double kv = config_.kv_cache_threshold;
  if (!predicate(
          "has capacity for sheddable requests",
          [&](const EndpointView& e) { return waiting_of(e) <= q && kv_of(e) <= kv; },
          FilterReason::kLegacyNoCapacity)) {
    w.enter("drop request");
    if (trace)
      for (uint32_t i : set) trace->candidates[i].filtered = FilterReason::kLegacyNoCapacity;
    set.clear();
    return false;
  }
  band_step(least_queuing);
  lora_affinity("low cost LoRA");
  band_step(least_kv_cache);
  return !set.empty();
}

}  // namespace infergate::routing
