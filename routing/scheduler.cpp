#include "routing/scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "routing/prefix_hasher.h"

namespace infergate::routing {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Working memory of one decision, per thread: schedule() never suspends, so one set per thread
// is enough, and it stops allocating once it has seen the largest pool.
struct Scratch {
  std::vector<double> waiting;  // per candidate: the figures the profile uses
  std::vector<double> kv;
  std::vector<uint32_t> kept;  // indexes of the candidates that passed the filters
  std::vector<uint32_t> other;
  std::vector<uint32_t> slots;        // per kept: prefix index slot
  std::vector<uint32_t> matched;      // per kept: prefix blocks held
  std::vector<uint32_t> matched_all;  // per candidate: prefix blocks held (0 when not ready)
  std::vector<uint8_t> lora;          // per kept: kLoraActive | kLoraWaiting | kLoraFree bits
  std::vector<std::array<double, kScorerCount>> scores;  // per kept
  std::vector<double> total;                             // per kept
  std::vector<uint32_t> ties;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

constexpr uint8_t kLoraActive = 1, kLoraWaiting = 2, kLoraFree = 4;

bool contains(const std::vector<std::string>& names, std::string_view model) {
  for (const auto& n : names)
    if (n.size() == model.size() && n == model) return true;
  return false;
}

uint8_t lora_state(const EndpointView& e, std::string_view model) {
  if (e.metrics == nullptr) return 0;
  const auto& m = *e.metrics;
  uint8_t st = 0;
  if (contains(m.running_adapters, model)) st |= kLoraActive;
  if (contains(m.waiting_adapters, model)) st |= kLoraWaiting;
  if (static_cast<int64_t>(m.running_adapters.size() + m.waiting_adapters.size()) < m.max_lora)
    st |= kLoraFree;
  return st;
}

// GIE's LoRA affinity values: active 1.0, free slot 0.8 (`default`: loraFreeSlotScore), waiting
// 0.6, else 0.
double lora_score(uint8_t st, double free_slot) {
  if (st & kLoraActive) return 1.0;
  if (st & kLoraFree) return free_slot;
  if (st & kLoraWaiting) return 0.6;
  return 0.0;
}

// 1 for the least loaded, falling linearly by 1 / max(hi - lo, span) per unit above it. With
// span 0 and hi > lo this is GIE's min-max normalisation (hi - x) / (hi - lo); all equal -> 1.
double relative_score(double x, double lo, double hi, double span) {
  const double d = std::max(hi - lo, span);
  if (!(d > 0)) return 1.0;
  return std::clamp(1.0 - (x - lo) / d, 0.0, 1.0);
}

DecisionReason reason_of(Scorer s) {
  switch (s) {
    case Scorer::kQueue:
      return DecisionReason::kLeastQueue;
    case Scorer::kKvCache:
      return DecisionReason::kLeastKvCache;
    case Scorer::kPrefix:
      return DecisionReason::kPrefixAffinity;
    case Scorer::kLora:
      return DecisionReason::kLoraAffinity;
    case Scorer::kInFlight:
      return DecisionReason::kLeastInFlight;
  }
  return DecisionReason::kTieBreak;
}

Decision no_endpoint() {
  Decision d;
  d.status = DecisionStatus::kNoEndpoint;
  d.reason = DecisionReason::kNoReadyEndpoint;
  return d;
}

Decision picked(size_t index, DecisionReason reason) {
  Decision d;
  d.status = DecisionStatus::kPicked;
  d.index = index;
  d.reason = reason;
  return d;
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config, std::shared_ptr<PrefixIndex> index)
    : config_(config),
      index_(std::move(index)),
      detector_(config.saturation),
      legacy_(config.legacy),
      ours_(config.profile == Profile::kDefault) {}

uint32_t Scheduler::block_bytes_for(std::span<const EndpointView> candidates) const {
  uint32_t tokens = config_.prefix.block_size_tokens;
  if (config_.prefix.auto_tune) {
    for (const auto& e : candidates) {
      if (e.metrics != nullptr && e.metrics->block_size > 0) {
        tokens = e.metrics->block_size;
        break;
      }
    }
  }
  return tokens * config_.prefix.bytes_per_token;
}

uint64_t Scheduler::capacity_for(const EndpointView& e) const {
  if (config_.prefix.auto_tune && e.metrics != nullptr && e.metrics->num_gpu_blocks > 0)
    return e.metrics->num_gpu_blocks;
  return config_.prefix.default_capacity_blocks;
}

void Scheduler::ensure_hashes(std::span<const EndpointView> candidates,
                              const RequestFeatures& request, SchedulingState& state) const {
  const uint32_t bb = block_bytes_for(candidates);
  if (state.hashed_ && state.block_bytes_ == bb) return;
  PrefixHasher::hash(request.model, request.cache_salt, request.tools, request.prompt, bb,
                     config_.prefix.max_blocks, state.hashes_);
  state.block_bytes_ = bb;
  state.hashed_ = true;
}

Decision Scheduler::schedule(std::span<const EndpointView> candidates,
                             const RequestFeatures& request, SchedulingState& state, Rng& rng,
                             DecisionTrace* trace) const {
  if (trace) {
    trace->clear();
    trace->profile = profile_name();
    const auto& w = config_.weights;
    trace->weights = {w.queue, w.kv_cache, w.prefix, w.lora, w.in_flight};
    trace->candidates.resize(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
      auto& c = trace->candidates[i];
      c.id = candidates[i].id;
      c.scores.fill(kNaN);
      if (!candidates[i].ready) c.filtered = FilterReason::kNotReady;
      if (candidates[i].metrics) {
        c.est_waiting = candidates[i].metrics->waiting;
        c.est_kv = candidates[i].metrics->kv_cache_usage;
      }
    }
  }
  Decision d;
  switch (config_.profile) {
    case Profile::kDefault:
    case Profile::kGieDefault:
      d = schedule_scored(candidates, request, state, rng, trace);
      break;
    case Profile::kGieLegacy:
      d = schedule_legacy(candidates, request, rng, trace);
      break;
    case Profile::kLeastRequest:
    case Profile::kRoundRobin:
    case Profile::kRandom:
      d = schedule_simple(candidates, rng, trace);
      break;
  }
  if (trace) trace->decision = d;
  return d;
}

Decision Scheduler::schedule_scored(std::span<const EndpointView> candidates,
                                    const RequestFeatures& request, SchedulingState& state,
                                    Rng& rng, DecisionTrace* trace) const {
  Scratch& s = scratch();
  const size_t n = candidates.size();
  s.waiting.resize(n);
  s.kv.resize(n);
  s.kept.clear();
  s.other.clear();  // ready candidates

  // Ready candidates and the figures the profile uses: for `default`, corrected by what was
  // sent since the scrape.
  for (size_t i = 0; i < n; ++i) {
    const EndpointView& e = candidates[i];
    if (!e.ready) continue;
    s.other.push_back(static_cast<uint32_t>(i));
    double waiting = 0, kv = 0;
    if (e.metrics != nullptr) {
      waiting = e.metrics->waiting;
      kv = e.metrics->kv_cache_usage;
    }
    if (ours_) {
      // What the engine will see once the requests sent since the scrape arrive: each one
      // queues, and its prompt occupies KV blocks. Only those still in flight count: one that
      // was already answered adds nothing, and the gateway's in-flight count bounds how many of
      // the requests sent since the scrape can still be at the engine.
      const int64_t sent = std::max<int64_t>(0, e.dispatched_since_scrape);
      const int64_t pending = std::min(sent, std::max<int64_t>(0, e.in_flight));
      waiting += static_cast<double>(pending);
      if (e.metrics != nullptr && e.metrics->block_size > 0 && e.metrics->num_gpu_blocks > 0 &&
          e.prompt_bytes_since_scrape > 0 && pending > 0) {
        const double tokens = static_cast<double>(e.prompt_bytes_since_scrape) *
                              (static_cast<double>(pending) / static_cast<double>(sent)) /
                              static_cast<double>(config_.prefix.bytes_per_token);
        kv += tokens / (static_cast<double>(e.metrics->block_size) *
                        static_cast<double>(e.metrics->num_gpu_blocks));
        kv = std::min(kv, 1.0);
      }
    }
    s.waiting[i] = waiting;
    s.kv[i] = kv;
    if (trace) {
      auto& c = trace->candidates[i];
      c.est_waiting = waiting;
      c.est_kv = kv;
    }
  }
  if (s.other.empty()) return no_endpoint();
  const auto& w = config_.weights;

  // Prefix affinity of every ready candidate (the saturation filter reads it too).
  uint32_t total_blocks = 0;
  s.matched_all.assign(n, 0);
  if (prefix_enabled()) {
    ensure_hashes(candidates, request, state);
    total_blocks = static_cast<uint32_t>(state.hashes_.size());
    if (trace) {
      trace->block_bytes = state.block_bytes_;
      trace->prefix_total_blocks = total_blocks;
    }
    if (total_blocks > 0) {
      const size_t r = s.other.size();
      s.slots.resize(r);
      s.matched.assign(r, 0);
      for (size_t j = 0; j < r; ++j) s.slots[j] = index_->find_slot(candidates[s.other[j]].key);
      index_->match(state.hashes_, s.slots, s.matched);
      for (size_t j = 0; j < r; ++j) s.matched_all[s.other[j]] = s.matched[j];
    }
  }

  // Filters (`default`): not stale and under the saturation limits; the queue limit grows with
  // the share of the prompt the candidate holds (prefixHeadroom).
  for (uint32_t i : s.other) {
    FilterReason why = FilterReason::kNone;
    if (ours_) {
      const double held =
          total_blocks > 0 ? static_cast<double>(s.matched_all[i]) / total_blocks : 0.0;
      why = detector_.stale(candidates[i]) ? FilterReason::kStaleMetrics
                                           : detector_.over_limit(s.waiting[i], s.kv[i], held);
    }
    if (trace) trace->candidates[i].filtered = why;
    if (why == FilterReason::kNone) s.kept.push_back(i);
  }
  bool fallback = false;
  if (s.kept.empty()) {  // every ready endpoint is saturated or stale: let the scorers choose
    fallback = true;
    s.kept = s.other;
    if (trace)
      for (uint32_t i : s.kept) trace->candidates[i].filtered = FilterReason::kNone;
  }
  const size_t k = s.kept.size();
  s.matched.resize(k);
  for (size_t j = 0; j < k; ++j) s.matched[j] = s.matched_all[s.kept[j]];
  if (k == 1) {
    Decision d = picked(s.kept[0], DecisionReason::kSingleCandidate);
    d.saturated_fallback = fallback;
    d.prefix_total_blocks = total_blocks;
    d.prefix_match_blocks = s.matched[0];  // reported for the hit-ratio metric
    if (trace) {
      auto& c = trace->candidates[s.kept[0]];
      c.total = 0;
      if (prefix_enabled() && total_blocks > 0) c.prefix_blocks = s.matched[0];
    }
    return d;
  }

  // LoRA affinity: GIE scores every request on its target model; `default` skips base-model
  // requests (all candidates would score alike except by free slots, which a base-model request
  // does not need).
  bool lora_on = w.lora > 0;
  if (lora_on) {
    s.lora.resize(k);
    bool listed = false;
    for (size_t j = 0; j < k; ++j) {
      s.lora[j] = lora_state(candidates[s.kept[j]], request.model);
      listed |= (s.lora[j] & (kLoraActive | kLoraWaiting)) != 0;
    }
    if (ours_) {
      lora_on =
          request.lora == LoraHint::kAdapter || (request.lora == LoraHint::kUnknown && listed);
    }
  }

  // Ranges for the relative scores.
  double q_lo = std::numeric_limits<double>::max(), q_hi = std::numeric_limits<double>::lowest();
  double f_lo = q_lo, f_hi = q_hi;
  for (uint32_t i : s.kept) {
    q_lo = std::min(q_lo, s.waiting[i]);
    q_hi = std::max(q_hi, s.waiting[i]);
    const double f = static_cast<double>(candidates[i].in_flight);
    f_lo = std::min(f_lo, f);
    f_hi = std::max(f_hi, f);
  }
  const double q_span = ours_ ? config_.queue_score_span : 0.0;
  const double f_span = ours_ ? config_.in_flight_score_span : 0.0;

  s.scores.resize(k);
  s.total.resize(k);
  double best = std::numeric_limits<double>::lowest();
  s.ties.clear();
  for (size_t j = 0; j < k; ++j) {
    const uint32_t i = s.kept[j];
    auto& sc = s.scores[j];
    sc[0] = w.queue > 0 ? relative_score(s.waiting[i], q_lo, q_hi, q_span) : kNaN;
    sc[1] = w.kv_cache > 0 ? std::clamp(1.0 - s.kv[i], 0.0, 1.0) : kNaN;
    sc[2] = w.prefix > 0
                ? (total_blocks > 0 ? static_cast<double>(s.matched[j]) / total_blocks : 0.0)
                : kNaN;
    sc[3] = lora_on ? lora_score(s.lora[j], ours_ ? config_.lora_free_slot_score : 0.8) : kNaN;
    sc[4] = w.in_flight > 0
                ? relative_score(static_cast<double>(candidates[i].in_flight), f_lo, f_hi, f_span)
                : kNaN;
    double t = 0;
    if (w.queue > 0) t += w.queue * sc[0];
    if (w.kv_cache > 0) t += w.kv_cache * sc[1];
    if (w.prefix > 0) t += w.prefix * sc[2];
    if (lora_on) t += w.lora * sc[3];
    if (w.in_flight > 0) t += w.in_flight * sc[4];
    s.total[j] = t;
    if (t > best) {
      best = t;
      s.ties.clear();
      s.ties.push_back(static_cast<uint32_t>(j));
    } else if (t == best) {
      s.ties.push_back(static_cast<uint32_t>(j));
    }
  }

  // Max score; equal scores drawn uniformly (GIE shuffles then stable-sorts: the same law).
  const uint32_t win = s.ties.size() == 1 ? s.ties[0] : s.ties[rng.below(s.ties.size())];
  Decision d = picked(s.kept[win], DecisionReason::kTieBreak);
  d.saturated_fallback = fallback;
  d.prefix_total_blocks = total_blocks;
  d.prefix_match_blocks = s.matched[win];
  if (s.ties.size() == 1) {
    // The decisive scorer: the largest weighted lead over the runner-up.
    size_t runner = win == 0 ? 1 : 0;
    for (size_t j = 0; j < k; ++j)
      if (j != win && s.total[j] > s.total[runner]) runner = j;
    const std::array<double, kScorerCount> weights = {w.queue, w.kv_cache, w.prefix,
                                                      lora_on ? w.lora : 0.0, w.in_flight};
    double lead = std::numeric_limits<double>::lowest();
    for (size_t sc = 0; sc < kScorerCount; ++sc) {
      if (!(weights[sc] > 0)) continue;
      const double l = weights[sc] * (s.scores[win][sc] - s.scores[runner][sc]);
      if (l > lead) {
        lead = l;
        d.reason = reason_of(static_cast<Scorer>(sc));
      }
    }
  }
  if (trace) {
    for (size_t j = 0; j < k; ++j) {
      auto& c = trace->candidates[s.kept[j]];
      c.scores = s.scores[j];
      c.total = s.total[j];
      c.prefix_blocks = s.matched[j];
    }
  }
  return d;
}

Decision Scheduler::schedule_legacy(std::span<const EndpointView> candidates,
                                    const RequestFeatures& request, Rng& rng,
                                    DecisionTrace* trace) const {
  Scratch& s = scratch();
  s.kept.clear();
  for (size_t i = 0; i < candidates.size(); ++i)
    if (candidates[i].ready) s.kept.push_back(static_cast<uint32_t>(i));
  if (s.kept.empty()) return no_endpoint();
  if (!legacy_.run(candidates, request, rng, s.kept, s.other, trace)) {
    Decision d;
    d.status = DecisionStatus::kShed;
    d.reason = DecisionReason::kShed;
    return d;
  }
  const uint32_t i = s.kept.size() == 1 ? s.kept[0] : s.kept[rng.below(s.kept.size())];
  return picked(i, DecisionReason::kLegacyTree);
}

Decision Scheduler::schedule_simple(std::span<const EndpointView> candidates, Rng& rng,
                                    DecisionTrace* /*trace*/) const {
  Scratch& s = scratch();
  s.kept.clear();
  switch (config_.profile) {
    case Profile::kLeastRequest: {
      // Fewest gateway in-flight requests; ties uniformly at random, so that equal endpoints
      // share a burst instead of the first one taking it.
      int64_t least = 0;
      for (size_t i = 0; i < candidates.size(); ++i) {
        const auto& c = candidates[i];
        if (!c.ready) continue;
        if (s.kept.empty() || c.in_flight < least) {
          least = c.in_flight;
          s.kept.clear();
          s.kept.push_back(static_cast<uint32_t>(i));
        } else if (c.in_flight == least) {
          s.kept.push_back(static_cast<uint32_t>(i));
        }
      }
      if (s.kept.empty()) return no_endpoint();
      const uint32_t i = s.kept.size() == 1 ? s.kept[0] : s.kept[rng.below(s.kept.size())];
      return picked(i, DecisionReason::kLeastRequest);
    }
    case Profile::kRoundRobin:
    case Profile::kRandom: {
      for (size_t i = 0; i < candidates.size(); ++i)
        if (candidates[i].ready) s.kept.push_back(static_cast<uint32_t>(i));
      if (s.kept.empty()) return no_endpoint();
      if (config_.profile == Profile::kRandom)
        return picked(s.kept[rng.below(s.kept.size())], DecisionReason::kRandom);
      const uint64_t turn = round_robin_.fetch_add(1, std::memory_order_relaxed);
      return picked(s.kept[turn % s.kept.size()], DecisionReason::kRoundRobin);
    }
    default:
      return no_endpoint();
  }
}

void Scheduler::record_dispatch(const EndpointView& chosen, const RequestFeatures& request,
                                SchedulingState& state) const {
  if (!prefix_enabled()) return;
  if (!state.hashed_) ensure_hashes(std::span<const EndpointView>(&chosen, 1), request, state);
  if (state.hashes_.empty()) return;
  const uint32_t slot = index_->slot_for(chosen.key);
  if (slot == 0) return;
  index_->insert(slot, state.hashes_, capacity_for(chosen));
}

}  // namespace infergate::routing
