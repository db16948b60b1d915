#include "metrics/engine_mapping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <span>

namespace infergate::metrics {
namespace {

// No engine queues a billion requests: a larger figure is garbage, and clamping each value
// keeps sums finite for the scheduler's arithmetic.
constexpr double kMaxCount = 1e9;
constexpr double kMaxBlocks = 9007199254740992.0;  // 2^53: above it doubles skip integers

// What a series contributes to.
enum class Target : uint8_t {
  kWaiting,          // summed
  kRunning,          // summed
  kKvUsage,          // averaged
  kKvUsageFallback,  // averaged, used only when no kKvUsage series exists
  kUsedBlocks,       // summed; usage = used / num_blocks when no usage series exists
  kBlockSize,        // gauge value, first valid series
  kNumBlocks,        // gauge value, summed
  kCacheInfo,        // info gauge: block size and block count in labels
  kLoraInfo,         // vLLM's lora_requests_info: the newest value wins
};

// One metric name the mapping reads. With `label` set, only series whose `label` equals
// `label_value` match (Triton's nv_trt_llm_* families multiplex values through a label). For
// kCacheInfo, `label` names the block size label and `label_value` the block count label.
struct Spec {
  std::string_view name;
  Target target;
  std::string_view label = {};
  std::string_view label_value = {};
};

// vLLM V1 (kv_cache_usage_perc, engine="N" labels) and V0 (gpu_cache_usage_perc) names.
constexpr Spec kVllmSpecs[] = {
    {"vllm:num_requests_waiting", Target::kWaiting},
    {"vllm:num_requests_running", Target::kRunning},
    {"vllm:kv_cache_usage_perc", Target::kKvUsage},
    {"vllm:gpu_cache_usage_perc", Target::kKvUsageFallback},
    {"vllm:cache_config_info", Target::kCacheInfo, "block_size", "num_gpu_blocks"},
    {"vllm:lora_requests_info", Target::kLoraInfo},
};

// SGLang: cache geometry as sglang:cache_config_info{page_size,num_pages} (what GIE reads) and,
// in newer releases, as the gauges sglang:page_size / sglang:num_pages.
constexpr Spec kSglangSpecs[] = {
    {"sglang:num_queue_reqs", Target::kWaiting},
    {"sglang:num_running_reqs", Target::kRunning},
    {"sglang:token_usage", Target::kKvUsage},
    {"sglang:cache_config_info", Target::kCacheInfo, "page_size", "num_pages"},
    {"sglang:page_size", Target::kBlockSize},
    {"sglang:num_pages", Target::kNumBlocks},
};

// TensorRT-LLM, both front ends (a page only ever has one family):
// - Triton's tensorrtllm_backend: nv_trt_llm_* gauges with a type label, as in GIE's
//   "triton-tensorrt-llm" mapping (running = scheduled requests, as GIE reads it; "active"
//   also counts requests paused in the engine);
// - trtllm-serve (tensorrt_llm/metrics/collector.py, served at /prometheus/metrics): trtllm_*,
//   as in GIE's "trtllm-serve" mapping; Dynamo re-exports them as trtllm:* in some releases.
// The "used" block count gives the usage when an older backend has no "fraction" series.
constexpr Spec kTrtllmSpecs[] = {
    {"nv_trt_llm_request_metrics", Target::kWaiting, "request_type", "waiting"},
    {"nv_trt_llm_request_metrics", Target::kRunning, "request_type", "scheduled"},
    {"nv_trt_llm_kv_cache_block_metrics", Target::kKvUsage, "kv_cache_block_type", "fraction"},
    {"nv_trt_llm_kv_cache_block_metrics", Target::kUsedBlocks, "kv_cache_block_type", "used"},
    {"nv_trt_llm_kv_cache_block_metrics", Target::kNumBlocks, "kv_cache_block_type", "max"},
    {"nv_trt_llm_kv_cache_block_metrics", Target::kBlockSize, "kv_cache_block_type", "tokens_per"},
    {"trtllm_num_requests_waiting", Target::kWaiting},
    {"trtllm_num_requests_running", Target::kRunning},
    {"trtllm_kv_cache_utilization", Target::kKvUsage},
    {"trtllm_kv_cache_used_blocks", Target::kUsedBlocks},
    {"trtllm_kv_cache_max_blocks", Target::kNumBlocks},
    {"trtllm_kv_cache_tokens_per_block", Target::kBlockSize},
    {"trtllm:num_requests_waiting", Target::kWaiting},
    {"trtllm:num_requests_running", Target::kRunning},
    {"trtllm:kv_cache_utilization", Target::kKvUsage},
    {"trtllm:kv_cache_used_blocks", Target::kUsedBlocks},
    {"trtllm:kv_cache_max_blocks", Target::kNumBlocks},
    {"trtllm:kv_cache_tokens_per_block", Target::kBlockSize},
};

std::span<const Spec> specs_for(EngineType type) {
  switch (type) {
    case EngineType::kSglang:
      return kSglangSpecs;
    case EngineType::kTrtllm:
      return kTrtllmSpecs;
    case EngineType::kAuto:
    case EngineType::kVllm:
      break;
  }
  return kVllmSpecs;
}

// Fields the engine's mapping can report; the rest are never flagged missing.
uint32_t fields_for(EngineType type) {
  using namespace engine_field;
  const uint32_t common = kWaiting | kRunning | kKvCacheUsage | kBlockSize | kNumGpuBlocks;
  return type == EngineType::kVllm ? common | kLoraInfo : common;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

template <typename T>
bool parse_unsigned(std::string_view text, T& out) {
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
}

// A gauge value as a positive count that fits T (block sizes, block counts).
template <typename T>
bool to_count(double v, T& out) {
  if (!std::isfinite(v) || v < 1 || v > static_cast<double>(std::numeric_limits<T>::max()) ||
      v > kMaxBlocks) {
    return false;
  }
  out = static_cast<T>(v);
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "a,b, c" -> {"a","b","c"}; empty items (and an empty list) give nothing.
std::vector<std::string> split_adapters(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

// Sum and count of finite values, each clamped to [0, max] so that sums stay finite.
struct Mean {
  double sum = 0;
  uint32_t n = 0;
  void add(double v, double max) {
    if (!std::isfinite(v)) return;
    sum += std::clamp(v, 0.0, max);
    ++n;
  }
  double mean() const { return sum / n; }
};

}  // namespace

std::optional<EngineType> parse_engine_type(std::string_view name) {
  if (iequals(name, "auto")) return EngineType::kAuto;
  if (iequals(name, "vllm")) return EngineType::kVllm;
  if (iequals(name, "sglang")) return EngineType::kSglang;
  if (iequals(name, "trtllm") || iequals(name, "trtllm-serve") || iequals(name, "tensorrt-llm") ||
      iequals(name, "triton-tensorrt-llm")) {
    return EngineType::kTrtllm;
  }
  return std::nullopt;
}

std::string_view engine_type_name(EngineType type) {
  switch (type) {
    case EngineType::kAuto:
      return "auto";
    case EngineType::kVllm:
      return "vllm";
    case EngineType::kSglang:
      return "sglang";
    case EngineType::kTrtllm:
      return "trtllm";
  }
  return "unknown";
}

EngineType detect_engine_type(const ParsedMetrics& parsed) {
  for (const Sample& s : parsed.samples) {
    const std::string_view n = s.name;
    if (n.starts_with("vllm:")) return EngineType::kVllm;
    if (n.starts_with("sglang:")) return EngineType::kSglang;
    if (n.starts_with("nv_trt_llm_") || n.starts_with("trtllm_") || n.starts_with("trtllm:")) {
      return EngineType::kTrtllm;
    }
  }
  return EngineType::kVllm;
}

// How several series of one metric combine (several engine="N" data-parallel ranks, SGLang
// dp ranks, Triton model instances):
// - request counts are summed: each rank has its own queue and batch, and the endpoint's load
//   is all of them;
// - usage fractions are averaged: with equally sized per-rank caches the mean is the
//   endpoint's used/total, and the engine's own load balancer sends new work to the emptier
//   rank, so the fullest one (max) would overstate the pressure;
// - block counts are summed (the endpoint caches that many blocks in all), the block size is
//   the first valid series' (ranks share one configuration);
// - LoRA info: the series with the newest timestamp value wins, a later series on a tie.
// Non-finite values are ignored as if absent; counts are clamped to [0, 1e9], usage to
// [0, 1], each value before it is combined.
EngineMetrics map_engine_metrics(const ParsedMetrics& parsed, EngineType type,
                                 const MappingOptions& options) {
  if (type == EngineType::kAuto) type = detect_engine_type(parsed);
  const std::span<const Spec> specs = specs_for(type);

  Mean waiting, running, kv, kv_fallback, used_blocks;
  double num_blocks = 0;
  bool has_num_blocks = false;
  uint32_t block_size = 0;
  const Sample* lora = nullptr;

  for (const Sample& s : parsed.samples) {
    const Spec* spec = nullptr;
    for (const Spec& candidate : specs) {
      if (candidate.name != s.name) continue;
      if (!candidate.label.empty() && candidate.target != Target::kCacheInfo &&
          parsed.label(s, candidate.label) != candidate.label_value) {
        continue;
      }
      spec = &candidate;
      break;
    }
    if (spec == nullptr) continue;
    if (!options.model_name.empty()) {
      const auto model = parsed.label(s, "model_name");
      if (model && *model != options.model_name) continue;
    }
    if (std::isnan(s.value)) continue;
    switch (spec->target) {
      case Target::kWaiting:
        waiting.add(s.value, kMaxCount);
        break;
      case Target::kRunning:
        running.add(s.value, kMaxCount);
        break;
      case Target::kKvUsage:
        kv.add(s.value, 1.0);
        break;
      case Target::kKvUsageFallback:
        kv_fallback.add(s.value, 1.0);
        break;
      case Target::kUsedBlocks:
        used_blocks.add(s.value, kMaxBlocks);
        break;
      case Target::kBlockSize:
        if (block_size == 0) to_count(s.value, block_size);
        break;
      case Target::kNumBlocks: {
        uint64_t n = 0;
        if (to_count(s.value, n)) {
          num_blocks += static_cast<double>(n);
          has_num_blocks = true;
        }
        break;
      }
      case Target::kCacheInfo: {
        // Label values like "None" (vLLM before profiling) are skipped like absent ones.
        uint32_t size = 0;
        uint64_t blocks = 0;
        const auto size_label = parsed.label(s, spec->label);
        if (block_size == 0 && size_label && parse_unsigned(*size_label, size) && size > 0) {
          block_size = size;
        }
        const auto blocks_label = parsed.label(s, spec->label_value);
        if (blocks_label && parse_unsigned(*blocks_label, blocks) && blocks > 0) {
          num_blocks += static_cast<double>(blocks);
          has_num_blocks = true;
        }
        break;
      }
      case Target::kLoraInfo:
        // +Inf is a (silly) newest timestamp; -Inf never beats anything but itself.
        if (lora == nullptr || s.value >= lora->value) lora = &s;
        break;
    }
  }

  EngineMetrics m;
  m.engine = type;
  uint32_t found = 0;
  if (waiting.n > 0) {
    m.waiting = std::min(waiting.sum, kMaxCount);
    found |= engine_field::kWaiting;
  }
  if (running.n > 0) {
    m.running = std::min(running.sum, kMaxCount);
    found |= engine_field::kRunning;
  }
  const Mean& usage = kv.n > 0 ? kv : kv_fallback;
  if (usage.n > 0) {
    m.kv_cache_usage = usage.mean();
    found |= engine_field::kKvCacheUsage;
  } else if (used_blocks.n > 0 && has_num_blocks) {
    m.kv_cache_usage = std::min(used_blocks.sum / num_blocks, 1.0);  // num_blocks >= 1
    found |= engine_field::kKvCacheUsage;
  }
  if (block_size > 0) {
    m.block_size = block_size;
    found |= engine_field::kBlockSize;
  }
  if (has_num_blocks) {
    m.num_gpu_blocks = static_cast<uint64_t>(std::min(num_blocks, kMaxBlocks));
    found |= engine_field::kNumGpuBlocks;
  }
  if (lora != nullptr) {
    m.has_lora_info = true;
    m.running_adapters = split_adapters(parsed.label(*lora, "running_lora_adapters").value_or(""));
    m.waiting_adapters = split_adapters(parsed.label(*lora, "waiting_lora_adapters").value_or(""));
    uint32_t max_lora = 0;
    if (const auto v = parsed.label(*lora, "max_lora");
        v && parse_unsigned(*v, max_lora) && max_lora <= 1'000'000) {
      m.max_lora = static_cast<int>(max_lora);
    }
    found |= engine_field::kLoraInfo;
  }
  m.missing = fields_for(type) & ~found;
  return m;
}

std::string describe_missing(uint32_t missing) {
  static constexpr struct {
    uint32_t bit;
    std::string_view name;
  } kNames[] = {
      {engine_field::kWaiting, "waiting"},
      {engine_field::kRunning, "running"},
      {engine_field::kKvCacheUsage, "kv_cache_usage"},
      {engine_field::kLoraInfo, "lora_info"},
      {engine_field::kBlockSize, "block_size"},
      {engine_field::kNumGpuBlocks, "num_gpu_blocks"},
  };
  std::string out;
  for (const auto& n : kNames) {
    if ((missing & n.bit) == 0) continue;
    if (!out.empty()) out.append(", ");
    out.append(n.name);
  }
  return out;
}

}  // namespace infergate::metrics
