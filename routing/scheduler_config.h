#pragma once
// Profiles and tunables of the scheduler (docs/scheduling.md explains every value). Plain data
// with defaults; config/ parses YAML into its own types and the proxy copies the values here.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infergate::routing {

enum class Profile : uint8_t {
  kDefault,       // ours: saturation filter + queue, kv, prefix, LoRA, in-flight scorers
  kGieDefault,    // GIE v1.x default: queue 2, kv-cache 2, prefix-cache 3, max-score picker
  kGieLegacy,     // GIE v0.3 filter tree (low-queue, LoRA affinity, least-queue, least-kv)
  kLeastRequest,  // fewest gateway in-flight requests, random tie-break
  kRoundRobin,    // ready candidates in turn
  kRandom,        // uniform over ready candidates
};

inline constexpr std::array<std::string_view, 6> kProfileNames = {
    "default", "gie-default", "gie-legacy", "least-request", "round-robin", "random"};

inline std::string_view profile_name(Profile p) {
  return kProfileNames[static_cast<size_t>(p)];
}
inline std::optional<Profile> parse_profile(std::string_view name) {
  for (size_t i = 0; i < kProfileNames.size(); ++i)
    if (kProfileNames[i] == name) return static_cast<Profile>(i);
  return std::nullopt;
}

// Relative weights of the scorers (any non-negative values; 0 disables a scorer, and a zero
// prefix weight also skips hashing the prompt).
struct ScorerWeights {
  double queue = 0;
  double kv_cache = 0;
  double prefix = 0;
  double lora = 0;
  double in_flight = 0;
};

// GIE's utilization-detector thresholds. Used by the admission SaturationDetector and by the
// `default` profile's saturation filter.
struct SaturationConfig {
  double queue_depth_threshold = 5;  // waiting requests per endpoint at "100 %"
  double kv_cache_threshold = 0.8;   // KV usage per endpoint at "100 %", in (0, 1]
  std::chrono::nanoseconds metrics_staleness = std::chrono::milliseconds(200);
  // Filter only: an endpoint passes while waiting < q * (1 + headroom) and kv < kv * (1 +
  // headroom) (the saturation figure itself always uses the plain thresholds).
  double headroom = 0;
  // Filter only (`default`): an endpoint that holds a fraction f of the request's prompt (prefix
  // blocks matched / prompt blocks) passes while waiting < q * (1 + headroom + prefixHeadroom *
  // f). Queueing behind a few requests on the pod that has the conversation cached costs less
  // than recomputing it elsewhere.
  double prefix_headroom = 1;
};

// Approximate prefix-cache index (GIE's approx-prefix-cache-producer), per profile.
struct PrefixConfig {
  bool auto_tune = true;                     // block size from the endpoints' cache_config_info
  uint32_t block_size_tokens = 16;           // used when not auto-tuned or not scraped yet
  uint32_t bytes_per_token = 4;              // prompt bytes per token (GIE: 4 characters)
  uint32_t max_blocks = 256;                 // blocks of the prompt hashed and matched, at most
  uint64_t default_capacity_blocks = 31250;  // per-endpoint LRU size when num_gpu_blocks unknown
};

// The v0.3 filter tree's thresholds (its environment variables, same defaults).
struct LegacyConfig {
  int queueing_threshold_lora = 128;       // QUEUING_THRESHOLD_LORA (v0.1-v0.2: 50)
  double kv_cache_threshold = 0.8;         // KV_CACHE_THRESHOLD
  int queue_threshold_critical = 5;        // QUEUE_THRESHOLD_CRITICAL
  double lora_affinity_threshold = 0.999;  // LORA_AFFINITY_THRESHOLD
  // A request is "critical" (never shed by the tree) when priority >= this. v0.3 treated only
  // Critical (priority 1) as critical and shed Standard; 0 follows SPEC §3.4 (only < 0 sheds).
  int critical_priority = 0;
};

struct SchedulerConfig {
  Profile profile = Profile::kDefault;
  ScorerWeights weights{2, 2, 3, 4, 1};
  SaturationConfig saturation;
  // `default` only: the queue and in-flight scores fall linearly from 1 (the least loaded
  // candidate) by 1 / max(spread, span) per request, so that a spread smaller than `span`
  // (noise) costs only a fraction of the weight. GIE's min-max normalisation is span = 0.
  double queue_score_span = 5;
  double in_flight_score_span = 16;
  // `default` only: the LoRA-affinity score of an endpoint that does not run the adapter but has
  // a free adapter slot (running 1.0, adapter waiting 0.6, no slot 0). GIE uses 0.8 (with weight
  // 4, two queued requests); 0.9 makes running vs free slot worth one queued request, so a hot
  // adapter spreads to an idle pod sooner, while a pod with no free slot still loses 3.6 points.
  double lora_free_slot_score = 0.9;
  PrefixConfig prefix;
  LegacyConfig legacy;

  // The defaults of a profile: for `gie-default` the weights are queue 2, kv-cache 2, prefix 3.
  static SchedulerConfig defaults_for(Profile p) {
    SchedulerConfig c;
    c.profile = p;
    switch (p) {
      case Profile::kDefault:
        break;
      case Profile::kGieDefault:
        c.weights = {2, 2, 3, 0, 0};
        break;
      default:
        c.weights = {};
        break;
    }
    return c;
  }

  // Empty when usable; else what is wrong, naming the field (for config/'s error messages).
  std::string validate() const {
    const auto& w = weights;
    if (!(w.queue >= 0 && w.kv_cache >= 0 && w.prefix >= 0 && w.lora >= 0 && w.in_flight >= 0))
      return "scorer weights must be >= 0";
    if (!(saturation.queue_depth_threshold > 0)) return "queueDepthThreshold must be > 0";
    if (!(saturation.kv_cache_threshold > 0 && saturation.kv_cache_threshold <= 1))
      return "kvCacheThreshold must be in (0, 1]";
    if (saturation.metrics_staleness.count() <= 0) return "metricsStalenessThreshold must be > 0";
    if (!(saturation.headroom >= 0)) return "headroom must be >= 0";
    if (!(saturation.prefix_headroom >= 0)) return "prefixHeadroom must be >= 0";
    if (!(lora_free_slot_score >= 0 && lora_free_slot_score <= 1))
      return "loraFreeSlotScore must be in [0, 1]";
    if (!(queue_score_span >= 0 && in_flight_score_span >= 0)) return "score spans must be >= 0";
    if (prefix.block_size_tokens == 0) return "blockSizeTokens must be >= 1";
    if (prefix.bytes_per_token == 0) return "bytesPerToken must be >= 1";
    if (prefix.max_blocks == 0 || prefix.max_blocks > 4096)
      return "maxPrefixBlocks must be in 1..4096";
    if (prefix.default_capacity_blocks == 0) return "lruCapacityPerServer must be >= 1";
    if (!(legacy.lora_affinity_threshold >= 0 && legacy.lora_affinity_threshold <= 1))
      return "loraAffinityThreshold must be in [0, 1]";
    if (!(legacy.kv_cache_threshold > 0 && legacy.kv_cache_threshold <= 1))
      return "legacy kvCacheThreshold must be in (0, 1]";
    return {};
  }
};

}  // namespace infergate::routing
