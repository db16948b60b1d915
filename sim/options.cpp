#include "sim/options.h"

#include "common/log.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace infergate::sim {
namespace {

enum class Arity { kNone, kOne, kMany };

// Applies the flag's values to the options; returns an error message or "".
using ApplyFn = std::string (*)(SimOptions&, std::span<const std::string_view>);

struct Flag {
  std::string_view name;
  std::string_view metavar;
  Arity arity;
  std::string_view section;
  std::string_view help;
  ApplyFn apply;
};

std::string parse_int(std::string_view text, int64_t min, int64_t max, int64_t* out) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    if (max == std::numeric_limits<int64_t>::max()) {
      return fmt::format("expected an integer >= {}, got '{}'", min, text);
    }
    return fmt::format("expected an integer in {}..{}, got '{}'", min, max, text);
  }
  *out = value;
  return {};
}

std::string parse_double(std::string_view text, double min, double max, double* out) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) ||
      value < min || value > max) {
    return fmt::format("expected a number in {}..{}, got '{}'", min, max, text);
  }
  *out = value;
  return {};
}

constexpr int64_t kIntMax = std::numeric_limits<int64_t>::max();
// Upper bounds that keep every delay well inside steady_clock's range once scaled.
constexpr double kMaxDelayMs = 7 * 24 * 3600 * 1000.0;  // a week
constexpr double kMaxTimeScale = 1000.0;

std::string set_int(std::string_view text, int64_t min, int64_t* out) {
  return parse_int(text, min, kIntMax, out);
}
std::string set_optional_int(std::string_view text, int64_t min, std::optional<int64_t>* out) {
  int64_t value = 0;
  std::string error = parse_int(text, min, kIntMax, &value);
  if (error.empty()) *out = value;
  return error;
}

// `name=path` or vLLM's JSON form {"name": ..., "path": ..., "base_model_name": ...}.
std::string parse_lora_module(std::string_view text, LoraModule* out) {
  if (!text.empty() && text.front() == '{') {
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(text);
    simdjson::dom::element doc;
    if (parser.parse(padded).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
      return fmt::format("invalid JSON '{}'", text);
    }
    std::string_view name;
    std::string_view path;
    if (doc["name"].get(name) != simdjson::SUCCESS || doc["path"].get(path) != simdjson::SUCCESS) {
      return fmt::format("JSON form needs string \"name\" and \"path\", got '{}'", text);
    }
    std::string_view base;
    if (doc["base_model_name"].get(base) != simdjson::SUCCESS) base = {};
    *out = {std::string(name), std::string(path), std::string(base)};
    return {};
  }
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return fmt::format("expected name=path, got '{}'", text);
  }
  *out = {std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)), {}};
  return {};
}

std::string parse_output_len_dist(std::string_view text, OutputLengthDist* out) {
  using Kind = OutputLengthDist::Kind;
  const std::string_view name = text.substr(0, text.find(':'));
  const std::string_view arg =
      name.size() < text.size() ? text.substr(name.size() + 1) : std::string_view();
  if (name == "fixed" || name == "uniform" || name == "exponential") {
    if (!arg.empty()) return fmt::format("'{}' takes no parameter, got '{}'", name, text);
    out->kind = name == "fixed"     ? Kind::kFixed
                : name == "uniform" ? Kind::kUniform
                                    : Kind::kExponential;
    return {};
  }
  if (name == "lognormal") {
    out->kind = Kind::kLognormal;
    out->sigma = 1.0;
    if (arg.empty()) return {};
    return parse_double(arg, 0, 4, &out->sigma);
  }
  return fmt::format("expected fixed, uniform, exponential or lognormal[:SIGMA], got '{}'", text);
}

std::string ignore(SimOptions&, std::span<const std::string_view>) {
  return {};
}

constexpr std::string_view kVllm = "vLLM-compatible";
constexpr std::string_view kSim = "Simulator";
constexpr std::string_view kFaults = "Faults";
constexpr std::string_view kOverrides = "Metric overrides (replace the live values in /metrics)";
constexpr std::string_view kIgnored = "Accepted for vLLM command-line compatibility, no effect";

const Flag kFlags[] = {
    {"--host", "HOST", Arity::kOne, kVllm, "Address to listen on. Default 127.0.0.1.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.host = std::string(v[0]);
       return std::string();
     }},
    {"--port", "PORT", Arity::kOne, kVllm,
     "Port to listen on; 0 picks a free one (the startup line says which). Default 8000.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       int64_t port = 0;
       std::string error = parse_int(v[0], 0, 65535, &port);
       o.port = static_cast<uint16_t>(port);
       return error;
     }},
    {"--model", "NAME", Arity::kOne, kVllm,
     "Model name or path (also accepted as the first positional argument). "
     "Default meta-llama/Llama-3.1-8B-Instruct (the model the default step costs are calibrated "
     "to).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.model = std::string(v[0]);
       return std::string();
     }},
    {"--served-model-name", "NAME [NAME ...]", Arity::kMany, kVllm,
     "Names the model is served under; requests may use any of them, responses echo the one "
     "used, metrics are labelled with the first. Default: the model.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.served_model_names.assign(v.begin(), v.end());
       return std::string();
     }},
    {"--lora-modules", "NAME=PATH [NAME=PATH ...]", Arity::kMany, kVllm,
     "LoRA adapters, each servable as a model name (also vLLM's JSON form "
     "'{\"name\":..,\"path\":..,\"base_model_name\":..}'). Implies --enable-lora.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       for (const std::string_view text : v) {
         LoraModule module;
         std::string error = parse_lora_module(text, &module);
         if (!error.empty()) return error;
         o.lora_modules.push_back(std::move(module));
       }
       return std::string();
     }},
    {"--enable-lora", "", Arity::kNone, kVllm,
     "Enable LoRA: adds vllm:lora_requests_info to /metrics.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_lora = true;
       return std::string();
     }},
    {"--max-loras", "N", Arity::kOne, kVllm,
     "GPU slots for LoRA adapters: at most this many distinct adapters run in one step; a "
     "request for another adapter waits, and one that is not resident pays --lora-load-ms. "
     "Default 1.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_loras);
     }},
    {"--max-model-len", "N", Arity::kOne, kVllm,
     "Context length: prompt + max_tokens above it (or a prompt of N tokens or more without "
     "max_tokens) is a 400. Must fit the KV cache. Default 131072.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_model_len);
     }},
    {"--max-num-seqs", "N", Arity::kOne, kVllm,
     "Requests running at once; more wait (vllm:num_requests_waiting). Default 1024 (vLLM V1 "
     "on an H100).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_num_seqs);
     }},
    {"--max-num-batched-tokens", "N", Arity::kOne, kVllm,
     "Token budget of one engine step (decode tokens plus prefill chunks). Default 8192 (vLLM V1 "
     "on an H100).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_num_batched_tokens);
     }},
    {"--enable-chunked-prefill", "", Arity::kNone, kVllm,
     "Split long prompts into chunks that fit the step budget (the default, as in vLLM V1).",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_chunked_prefill = true;
       return std::string();
     }},
    {"--no-enable-chunked-prefill", "", Arity::kNone, kVllm,
     "A prompt is prefilled in one step; one larger than the remaining budget waits.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_chunked_prefill = false;
       return std::string();
     }},
    {"--block-size", "N", Arity::kOne, kVllm, "KV-cache block size in tokens. Default 16.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.block_size);
     }},
    {"--num-gpu-blocks-override", "N", Arity::kOne, kVllm,
     "KV-cache size in blocks. Default 27800 (Llama-3.1-8B on an 80 GB H100).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       // A bound that keeps the block tables within a few hundred MB.
       int64_t blocks = 0;
       std::string error = parse_int(v[0], 1, 50'000'000, &blocks);
       o.num_gpu_blocks_override = blocks;
       return error;
     }},
    {"--enable-prefix-caching", "", Arity::kNone, kVllm,
     "Keep the content of finished requests' KV blocks and reuse it for later requests with the "
     "same prefix (the default, as in vLLM V1).",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prefix_caching = true;
       return std::string();
     }},
    {"--no-enable-prefix-caching", "", Arity::kNone, kVllm,
     "No prefix cache: every prompt is computed in full.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prefix_caching = false;
       return std::string();
     }},
    {"--enable-prompt-tokens-details", "", Arity::kNone, kVllm,
     "Report usage.prompt_tokens_details.cached_tokens when part of the prompt came from the "
     "prefix cache (the default here; vLLM's default is off).",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prompt_tokens_details = true;
       return std::string();
     }},
    {"--no-enable-prompt-tokens-details", "", Arity::kNone, kVllm,
     "usage.prompt_tokens_details is always null, as in vLLM by default.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prompt_tokens_details = false;
       return std::string();
     }},
    {"--show-hidden-metrics-for-version", "VERSION", Arity::kOne, kVllm,
     "Also expose metrics vLLM has deprecated: vllm:gpu_cache_usage_perc, "
     "vllm:gpu_prefix_cache_queries/hits.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.show_hidden_metrics_for_version = std::string(v[0]);
       return std::string();
     }},
    {"--seed", "N", Arity::kOne, kVllm,
     "Seed of the random source (--error-rate draws, output lengths, ids). Default: random.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       int64_t seed = 0;
       std::string error = set_int(v[0], 0, &seed);
       o.seed = static_cast<uint64_t>(seed);
       return error;
     }},

    {"--pod-name", "NAME", Arity::kOne, kSim,
     "Sent as x-sim-pod on every response and in /sim/stats. Default: the host name.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.pod_name = std::string(v[0]);
       return std::string();
     }},
    {"--step-base-ms", "MS", Arity::kOne, kSim,
     "Fixed cost of one engine step (weights read, launch and CPU overhead). Default 7.0.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.step_base_ms);
     }},
    {"--step-prefill-token-ms", "MS", Arity::kOne, kSim,
     "Step cost of each prompt token computed in the step. Default 0.03.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.step_prefill_token_ms);
     }},
    {"--step-decode-seq-ms", "MS", Arity::kOne, kSim,
     "Step cost of each sequence decoding one token in the step. Default 0.05.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.step_decode_seq_ms);
     }},
    {"--lora-load-ms", "MS", Arity::kOne, kSim,
     "Added to a step for each LoRA adapter it needs that is not in a GPU slot. Default 100.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.lora_load_ms);
     }},
    {"--ttft-ms", "MS", Arity::kOne, kSim,
     "Fixed-latency mode (instead of the step costs): a step with prefill work takes MS, so a "
     "lone request's first token comes MS after admission. Default 20 once --itl-ms is given.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       double ms = 0;
       std::string error = parse_double(v[0], 0, kMaxDelayMs, &ms);
       o.ttft_ms = ms;
       return error;
     }},
    {"--itl-ms", "MS", Arity::kOne, kSim,
     "Fixed-latency mode: a decode-only step takes MS, so a lone request's tokens come MS apart. "
     "Default 5 once --ttft-ms is given.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       double ms = 0;
       std::string error = parse_double(v[0], 0, kMaxDelayMs, &ms);
       o.itl_ms = ms;
       return error;
     }},
    {"--output-tokens", "N", Arity::kOne, kSim,
     "Tokens a request generates before it stops on its own (finish_reason \"stop\", the last "
     "token being end-of-sequence with empty text). A smaller max_tokens/max_completion_tokens "
     "cuts it short (finish_reason \"length\"); \"ignore_eos\": true generates max_tokens. "
     "The mean when --output-len-dist is not fixed. Default 16.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.output_tokens);
     }},
    {"--output-len-dist", "DIST", Arity::kOne, kSim,
     "How --output-tokens varies per request: fixed (the default), uniform (1..2N-1), "
     "exponential, or lognormal[:SIGMA] (SIGMA of the underlying normal, default 1), each with "
     "mean N. Drawn from the --seed source.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_output_len_dist(v[0], &o.output_len_dist);
     }},
    {"--time-scale", "F", Arity::kOne, kSim,
     "Simulated time runs 1/F times as fast as the wall clock: every simulated delay (engine "
     "steps, LoRA loads, --startup-delay-ms, --metrics-delay-ms; not --keep-alive-timeout-s) "
     "takes F times as long, and every reported time (metrics, created) is simulated time. 0 "
     "runs each burst of work at once. Default 1.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxTimeScale, &o.time_scale);
     }},
    {"--keep-alive-timeout-s", "S", Arity::kOne, kSim,
     "Close a connection idle this long between requests, as vLLM's uvicorn does after 5 s; "
     "0 never. Default 5.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs / 1000, &o.keep_alive_timeout_s);
     }},
    {"--log-level", "LEVEL", Arity::kOne, kSim,
     "debug, info, warn, error or off (stderr). Default info.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       o.log_level = std::string(v[0]);
       return std::string();
     }},

    {"--fail-mid-stream-after", "N", Arity::kOne, kFaults,
     "Streaming responses: after N SSE events close the connection abruptly (no final chunk, "
     "no [DONE], no chunked terminator).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_optional_int(v[0], 0, &o.fail_mid_stream_after);
     }},
    {"--error-rate", "P", Arity::kOne, kFaults,
     "Fraction (0..1) of POST /v1/* requests answered at once with a vLLM-shaped error of "
     "--error-status.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, 1, &o.error_rate);
     }},
    {"--error-status", "S", Arity::kOne, kFaults, "Status of --error-rate errors. Default 500.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       int64_t status = 0;
       std::string error = parse_int(v[0], 400, 599, &status);
       o.error_status = static_cast<int>(status);
       return error;
     }},
    {"--refuse-after", "N", Arity::kOne, kFaults,
     "After N /v1/* requests close the listener (new connections are refused) and close every "
     "connection once its current response is done.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_optional_int(v[0], 0, &o.refuse_after);
     }},
    {"--startup-delay-ms", "MS", Arity::kOne, kFaults,
     "Listen at once but answer 503 (/health, /metrics, /v1/*) until this much time passed.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.startup_delay_ms);
     }},
    {"--metrics-delay-ms", "MS", Arity::kOne, kFaults, "Delay every /metrics answer.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.metrics_delay_ms);
     }},
    {"--metrics-fail", "", Arity::kNone, kFaults, "Answer /metrics with 500.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.metrics_fail = true;
       return std::string();
     }},

    {"--metrics-waiting", "N", Arity::kOne, kOverrides, "vllm:num_requests_waiting.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_optional_int(v[0], 0, &o.metrics_waiting);
     }},
    {"--metrics-running", "N", Arity::kOne, kOverrides, "vllm:num_requests_running.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_optional_int(v[0], 0, &o.metrics_running);
     }},
    {"--metrics-kv-usage", "F", Arity::kOne, kOverrides, "vllm:kv_cache_usage_perc (0..1).",
     [](SimOptions& o, std::span<const std::string_view> v) {
       double usage = 0;
       std::string error = parse_double(v[0], 0, 1, &usage);
       o.metrics_kv_usage = usage;
       return error;
     }},

    {"--dtype", "X", Arity::kOne, kIgnored, "", ignore},
    {"--tensor-parallel-size", "N", Arity::kOne, kIgnored, "", ignore},
    {"--pipeline-parallel-size", "N", Arity::kOne, kIgnored, "", ignore},
    {"--data-parallel-size", "N", Arity::kOne, kIgnored, "", ignore},
    {"--gpu-memory-utilization", "F", Arity::kOne, kIgnored, "", ignore},
    {"--kv-cache-dtype", "X", Arity::kOne, kIgnored, "", ignore},
    {"--quantization", "X", Arity::kOne, kIgnored, "", ignore},
    {"--max-lora-rank", "N", Arity::kOne, kIgnored, "", ignore},
    {"--max-cpu-loras", "N", Arity::kOne, kIgnored, "", ignore},
    {"--swap-space", "N", Arity::kOne, kIgnored, "", ignore},
    {"--tokenizer", "X", Arity::kOne, kIgnored, "", ignore},
    {"--download-dir", "X", Arity::kOne, kIgnored, "", ignore},
    {"--chat-template", "X", Arity::kOne, kIgnored, "", ignore},
    {"--tool-call-parser", "X", Arity::kOne, kIgnored, "", ignore},
    {"--reasoning-parser", "X", Arity::kOne, kIgnored, "", ignore},
    {"--uvicorn-log-level", "X", Arity::kOne, kIgnored, "", ignore},
    {"--load-format", "X", Arity::kOne, kIgnored, "", ignore},
    {"--revision", "X", Arity::kOne, kIgnored, "", ignore},
    {"--trust-remote-code", "", Arity::kNone, kIgnored, "", ignore},
    {"--enforce-eager", "", Arity::kNone, kIgnored, "", ignore},
    {"--disable-log-requests", "", Arity::kNone, kIgnored, "", ignore},
    {"--disable-log-stats", "", Arity::kNone, kIgnored, "", ignore},
    {"--enable-auto-tool-choice", "", Arity::kNone, kIgnored, "", ignore},
};

const Flag* find_flag(std::string_view name) {
  for (const Flag& flag : kFlags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

bool looks_like_flag(std::string_view arg) {
  return arg.size() > 1 && arg.front() == '-';
}

std::string validate(const SimOptions& o) {
  if (o.host.empty()) return "--host: must not be empty";
  if (o.model.empty()) return "--model: must not be empty";
  log::Level level = log::Level::kInfo;
  if (!log::parse_level(o.log_level, &level)) {
    return fmt::format("--log-level: expected debug, info, warn, error or off, got '{}'",
                       o.log_level);
  }
  // vLLM refuses to start in both cases (vllm/v1/core/kv_cache_utils.py, vllm/config).
  const int64_t kv_tokens = o.effective_num_gpu_blocks() * o.block_size;
  if (o.max_model_len > kv_tokens) {
    return fmt::format(
        "The model's max seq len ({}) is larger than the maximum number of tokens that can be "
        "stored in KV cache ({}). Try increasing `gpu_memory_utilization` or decreasing "
        "`max_model_len` when initializing the engine.",
        o.max_model_len, kv_tokens);
  }
  if (!o.enable_chunked_prefill && o.max_num_batched_tokens < o.max_model_len) {
    return fmt::format(
        "max_num_batched_tokens ({}) is smaller than max_model_len ({}). This effectively limits "
        "the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer "
        "sequences. Please increase max_num_batched_tokens or decrease max_model_len.",
        o.max_num_batched_tokens, o.max_model_len);
  }
  for (const LoraModule& module : o.lora_modules) {
    const auto served = o.effective_served_names();
    if (std::find(served.begin(), served.end(), module.name) != served.end()) {
      return fmt::format("--lora-modules: adapter name '{}' is also a served model name",
                         module.name);
    }
  }
  return {};
}

// Word-wraps `text` to kHelpWidth columns, each line starting with `indent`.
void append_wrapped(std::string& out, std::string_view text, std::string_view indent) {
  constexpr size_t kHelpWidth = 92;
  size_t column = 0;
  while (!text.empty()) {
    const size_t space = text.find(' ');
    const std::string_view word = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    if (column != 0 && column + 1 + word.size() > kHelpWidth) {
      out.push_back('\n');
      column = 0;
    }
    if (column == 0) {
      out.append(indent);
      column = indent.size();
    } else {
      out.push_back(' ');
      ++column;
    }
    out.append(word);
    column += word.size();
  }
  out.push_back('\n');
}

}  // namespace

std::vector<std::string> SimOptions::effective_served_names() const {
  if (!served_model_names.empty()) return served_model_names;
  return {model};
}

int64_t SimOptions::effective_num_gpu_blocks() const {
  return num_gpu_blocks_override.value_or(kDefaultNumGpuBlocks);
}

ParseOutcome parse_options(std::span<const std::string_view> args) {
  ParseOutcome outcome;
  const auto fail = [&](std::string message) {
    outcome.action = ParseOutcome::Action::kError;
    outcome.error = std::move(message);
    return outcome;
  };
  bool model_positional_seen = false;
  size_t i = 0;
  if (!args.empty() && args[0] == "serve") i = 1;
  std::vector<std::string_view> values;
  while (i < args.size()) {
    const std::string_view arg = args[i++];
    if (!looks_like_flag(arg)) {
      if (model_positional_seen) return fail(fmt::format("unexpected argument '{}'", arg));
      model_positional_seen = true;
      outcome.options.model = std::string(arg);
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      outcome.action = ParseOutcome::Action::kHelp;
      return outcome;
    }
    if (arg == "--version") {
      outcome.action = ParseOutcome::Action::kVersion;
      return outcome;
    }
    std::string name(arg.substr(0, arg.find('=')));
    std::replace(name.begin() + 2, name.end(), '_', '-');
    const Flag* flag = arg.starts_with("--") ? find_flag(name) : nullptr;
    if (flag == nullptr) return fail(fmt::format("unknown flag '{}'", arg));

    values.clear();
    const size_t eq = arg.find('=');
    if (eq != std::string_view::npos) {
      if (flag->arity == Arity::kNone) {
        return fail(fmt::format("{}: takes no value", flag->name));
      }
      values.push_back(arg.substr(eq + 1));
    } else if (flag->arity == Arity::kOne) {
      if (i == args.size()) return fail(fmt::format("{}: missing value", flag->name));
      values.push_back(args[i++]);
    } else if (flag->arity == Arity::kMany) {
      while (i < args.size() && !looks_like_flag(args[i])) values.push_back(args[i++]);
      if (values.empty()) return fail(fmt::format("{}: missing value", flag->name));
    }
    std::string error = flag->apply(outcome.options, values);
    if (!error.empty()) return fail(fmt::format("{}: {}", flag->name, error));
  }
  std::string error = validate(outcome.options);
  if (!error.empty()) return fail(std::move(error));
  return outcome;
}

std::string help_text() {
  std::string out =
      "Usage: infergate-sim [serve] [MODEL] [FLAGS]\n"
      "\n"
      "A vLLM-compatible model-server simulator: OpenAI completions, chat completions and\n"
      "embeddings timed by a model of vLLM V1's engine (continuous batching in steps, chunked\n"
      "prefill, a paged KV cache with prefix caching and preemption, LoRA slots), vLLM V1\n"
      "/metrics, /health, /v1/models, LoRA loading, and test controls under /sim/. The default\n"
      "step costs model Llama-3.1-8B on one H100 (docs/simulator.md). Prints 'infergate-sim\n"
      "listening on HOST:PORT' once listening; logs go to stderr. Flags accept --flag VALUE,\n"
      "--flag=VALUE, and underscores for dashes.\n";
  std::string_view section;
  std::string ignored_names;
  for (const Flag& flag : kFlags) {
    if (flag.section != section) {
      section = flag.section;
      out += fmt::format("\n{}:\n", section);
    }
    if (section == kIgnored) {
      ignored_names += fmt::format("{}{}", ignored_names.empty() ? "" : " ", flag.name);
      continue;
    }
    std::string usage(flag.name);
    if (!flag.metavar.empty()) usage += fmt::format(" {}", flag.metavar);
    out += fmt::format("  {}\n", usage);
    append_wrapped(out, flag.help, "      ");
  }
  append_wrapped(out, ignored_names, "  ");
  out +=
      "\nOther:\n"
      "  -h, --help     Show this help and exit.\n"
      "  --version      Print the version and exit.\n"
      "\nBad flags print a message on stderr and exit 1; a listen failure exits 2;\n"
      "SIGTERM/SIGINT exit 0.\n";
  return out;
}

}  // namespace infergate::sim
