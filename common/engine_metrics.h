#pragma once
// What one scrape of a model server's /metrics says, engine-independent (SPEC §6-§7).
// Produced by metrics/ (parser + engine mappings), published by proxy/ (scraper) as part of an
// immutable snapshot, consumed by routing/ (scheduler). Plain data: no dependencies.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace infergate {

// Which metric names an endpoint exposes (SPEC §7): chosen per pool or by the endpoint label
// `inference.networking.k8s.io/engine-type`. kAuto recognises the engine from the names on the
// page and falls back to vLLM. metrics/engine_mapping.h parses the names.
enum class EngineType : uint8_t { kAuto, kVllm, kSglang, kTrtllm };

// Bits of EngineMetrics::missing.
namespace engine_field {
inline constexpr uint32_t kWaiting = 1u << 0;
inline constexpr uint32_t kRunning = 1u << 1;
inline constexpr uint32_t kKvCacheUsage = 1u << 2;
inline constexpr uint32_t kLoraInfo = 1u << 3;      // vLLM only
inline constexpr uint32_t kBlockSize = 1u << 4;     // optional everywhere
inline constexpr uint32_t kNumGpuBlocks = 1u << 5;  // optional everywhere
// Without these the scheduler cannot judge load: the endpoint is "not reporting".
inline constexpr uint32_t kRequired = kWaiting | kRunning | kKvCacheUsage;
}  // namespace engine_field

struct EngineMetrics {
  double waiting = 0;         // requests queued in the engine
  double running = 0;         // requests in the running batch
  double kv_cache_usage = 0;  // 0..1
  // LoRA (vLLM's lora_requests_info, newest series): adapters running / waiting, slot count.
  std::vector<std::string> running_adapters;
  std::vector<std::string> waiting_adapters;
  int max_lora = 0;
  bool has_lora_info = false;
  // KV cache geometry (vLLM's cache_config_info); 0 when unknown.
  uint32_t block_size = 0;
  uint64_t num_gpu_blocks = 0;
  // The mapping that produced these values (never kAuto once mapped).
  EngineType engine = EngineType::kAuto;
  // engine_field bits of what the page did not report; the matching values above are 0. Only
  // fields the engine's mapping knows are ever set (no kLoraInfo for SGLang or TensorRT-LLM).
  uint32_t missing = 0;

  // False when waiting, running or KV-cache usage is missing: treat like a failed scrape.
  bool reporting() const { return (missing & engine_field::kRequired) == 0; }
};

}  // namespace infergate
