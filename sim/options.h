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

// How many tokens a request generates when nothing stops it earlier (--output-len-dist).
struct OutputLengthDist {
  enum class Kind { kFixed, kUniform, kExponential, kLognormal };
  Kind kind = Kind::kFixed;
  double sigma = 1.0;  // lognormal: the sigma of the underlying normal
};

struct SimOptions {
  // vLLM-compatible.
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: the kernel picks a free port
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  std::vector<std::string> served_model_names;  // empty: {model}
  std::vector<LoraModule> lora_modules;
  bool enable_lora = false;  // also implied by --lora-modules
  int64_t max_loras = 1;
  int64_t max_model_len = 131072;  // Llama-3.1-8B's context
  // vLLM V1's `vllm serve` defaults on a GPU of 70 GiB or more that is not an A100 (H100, H200).
  int64_t max_num_seqs = 1024;
  int64_t max_num_batched_tokens = 8192;
  bool enable_chunked_prefill = true;
  int64_t block_size = 16;
  std::optional<int64_t> num_gpu_blocks_override;
  bool enable_prefix_caching = true;
  bool enable_prompt_tokens_details = true;  // vLLM's default is false; see docs/simulator.md
  std::optional<std::string> show_hidden_metrics_for_version;
  std::optional<uint64_t> seed;

  // Simulator: engine step costs (the default calibration: Llama-3.1-8B BF16 on one H100 SXM).
  double step_base_ms = 7.0;
  double step_prefill_token_ms = 0.03;
  double step_decode_seq_ms = 0.05;
  double lora_load_ms = 100.0;
  // Fixed-latency mode: set by --ttft-ms or --itl-ms; the other one then takes its default.
  std::optional<double> ttft_ms;
  std::optional<double> itl_ms;
  int64_t output_tokens = 16;
  OutputLengthDist output_len_dist;
  double time_scale = 1.0;  // every simulated delay is multiplied by this

  // Simulator: identity, faults, overrides.
  std::string pod_name;  // empty: the host name
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
  bool fixed_latency() const { return ttft_ms.has_value() || itl_ms.has_value(); }
};

// Defaults of the fixed-latency mode (--ttft-ms / --itl-ms).
inline constexpr double kDefaultTtftMs = 20.0;
inline constexpr double kDefaultItlMs = 5.0;

// The KV cache of Llama-3.1-8B (BF16, 128 KiB of KV per token) on one 80 GB H100 at vLLM's
// gpu_memory_utilization 0.9: about 54 GiB after 15 GiB of weights and the activation peak,
// 27,800 blocks of 16 tokens (444,800 tokens). See docs/simulator.md.
inline constexpr int64_t kDefaultNumGpuBlocks = 27800;

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
