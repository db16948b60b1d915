#pragma once
// infergate-sim's command line. Mirrors `vllm serve` where vLLM has the flag (same names, same
// defaults where they matter to a gateway), and adds simulator knobs with names of their own.
// Parsing is sans-I/O so tests can feed argument lists; main prints the outcome.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::sim {

struct LoraModule {
  std::string name;
  std::string path;
  std::string base_model_name;  // empty: the first served model name
};

struct SimOptions {
  // vLLM-compatible.
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: the kernel picks a free port
  std::string model = "facebook/opt-125m";
  std::vector<std::string> served_model_names;  // empty: {model}
  std::vector<LoraModule> lora_modules;
  bool enable_lora = false;  // also implied by --lora-modules
  int64_t max_loras = 1;
  int64_t max_model_len = 4096;
  int64_t max_num_seqs = 256;
  int64_t block_size = 16;
  std::optional<int64_t> num_gpu_blocks_override;
  bool enable_prefix_caching = true;  // reported in cache_config_info only
  std::optional<uint64_t> seed;

  // Simulator.
  std::string pod_name;  // empty: the host name
  double ttft_ms = 20.0;
  double itl_ms = 5.0;
  int64_t output_tokens = 16;
  double time_scale = 1.0;  // every delay is multiplied by this
  std::optional<int64_t> fail_mid_stream_after;
  double error_rate = 0.0;
  int error_status = 500;
  std::optional<int64_t> refuse_after;
  double startup_delay_ms = 0.0;
  double metrics_delay_ms = 0.0;
  bool metrics_fail = false;
  std::optional<int64_t> metrics_waiting;
  std::optional<int64_t> metrics_running;
  std::optional<double> metrics_kv_usage;
  double keep_alive_timeout_s = 5.0;  // uvicorn's timeout_keep_alive as vLLM sets it; 0: none
  std::string log_level = "info";

  // What the server actually serves: served_model_names or {model}.
  std::vector<std::string> effective_served_names() const;
  bool lora_enabled() const { return enable_lora || !lora_modules.empty(); }
  // num_gpu_blocks_override or the simulator's default cache size.
  int64_t effective_num_gpu_blocks() const;
};

// A KV cache of 2048 blocks (32k tokens at block size 16): small enough that a test's load moves
// vllm:kv_cache_usage_perc visibly.
inline constexpr int64_t kDefaultNumGpuBlocks = 2048;

struct ParseOutcome {
  enum class Action { kRun, kHelp, kVersion, kError };
  Action action = Action::kRun;
  SimOptions options;
  std::string error;  // kError: one line, no trailing newline
};

// `args` excludes argv[0]. Accepts `--flag value` and `--flag=value`, underscores in flag names
// as dashes (as vLLM does), the model as the first positional, and an optional leading `serve`
// so `vllm serve ...` command lines work unchanged.
ParseOutcome parse_options(std::span<const std::string_view> args);

std::string help_text();

}  // namespace infergate::sim
