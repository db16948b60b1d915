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
     "Default facebook/opt-125m.",
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
     "Distinct adapters that may run at once; a request for another adapter waits. Default 1.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_loras);
     }},
    {"--max-model-len", "N", Arity::kOne, kVllm,
     "Context length: prompt + max_tokens above it (or a prompt of N tokens or more without "
     "max_tokens) is a 400. Default 4096.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_model_len);
     }},
    {"--max-num-seqs", "N", Arity::kOne, kVllm,
     "Requests generating at once; more wait (vllm:num_requests_waiting). Default 256.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.max_num_seqs);
     }},
    {"--block-size", "N", Arity::kOne, kVllm, "KV-cache block size in tokens. Default 16.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.block_size);
     }},
    {"--num-gpu-blocks-override", "N", Arity::kOne, kVllm,
     "KV-cache size in blocks (reported in vllm:cache_config_info). Default 2048.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_optional_int(v[0], 1, &o.num_gpu_blocks_override);
     }},
    {"--enable-prefix-caching", "", Arity::kNone, kVllm,
     "Report prefix caching as enabled in cache_config_info (the default).",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prefix_caching = true;
       return std::string();
     }},
    {"--no-enable-prefix-caching", "", Arity::kNone, kVllm,
     "Report prefix caching as disabled in cache_config_info.",
     [](SimOptions& o, std::span<const std::string_view>) {
       o.enable_prefix_caching = false;
       return std::string();
     }},
    {"--seed", "N", Arity::kOne, kVllm,
     "Seed of the random source (--error-rate draws, ids). Default: random.",
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
    {"--ttft-ms", "MS", Arity::kOne, kSim,
     "Time to first token, from admission (prefill time). Default 20.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.ttft_ms);
     }},
    {"--itl-ms", "MS", Arity::kOne, kSim, "Delay between two output tokens. Default 5.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return parse_double(v[0], 0, kMaxDelayMs, &o.itl_ms);
     }},
    {"--output-tokens", "N", Arity::kOne, kSim,
     "Tokens a request generates before it stops on its own (finish_reason \"stop\", the last "
     "token being end-of-sequence with empty text). A smaller max_tokens/max_completion_tokens "
     "cuts it short (finish_reason \"length\"); \"ignore_eos\": true generates max_tokens. "
     "Default 16.",
     [](SimOptions& o, std::span<const std::string_view> v) {
       return set_int(v[0], 1, &o.output_tokens);
     }},
    {"--time-scale", "F", Arity::kOne, kSim,
     "Multiplies every simulated delay (--ttft-ms, --itl-ms, --startup-delay-ms, "
     "--metrics-delay-ms; not --keep-alive-timeout-s): 0.1 runs ten times faster, 0 removes "
     "them. Default 1.",
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
    {"--max-num-batched-tokens", "N", Arity::kOne, kIgnored, "", ignore},
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
    {"--enable-chunked-prefill", "", Arity::kNone, kIgnored, "", ignore},
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
      "embeddings with simulated timing, vLLM V1 /metrics, /health, /v1/models, and test\n"
      "controls under /sim/. Prints 'infergate-sim listening on HOST:PORT' once listening;\n"
      "logs go to stderr. Flags accept --flag VALUE, --flag=VALUE, and underscores for dashes.\n";
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
