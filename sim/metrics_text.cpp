#include "sim/metrics_text.h"

#include "sim/json_text.h"

#include <fmt/format.h>

#include <cmath>

namespace infergate::sim {
namespace {

// Appends a label value with the exposition format's escapes.
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '"') {
      out.append("\\\"");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
}

class Writer {
 public:
  Writer(const MetricsSnapshot& snapshot, std::string& out) : s_(snapshot), out_(out) {}

  void header(std::string_view name, std::string_view help, std::string_view type) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  // name{engine="0",<extra>,model_name="..."} value, labels in sorted order: the caller passes
  // `extra` already formatted and sorting between "engine" and "model_name" (finished_reason, le).
  void sample(std::string_view name, std::string_view extra, double value) {
    out_.append(name).append("{engine=\"0\",");
    if (!extra.empty()) out_.append(extra).push_back(',');
    out_.append("model_name=\"");
    append_label_value(out_, s_.model_name);
    out_.append("\"} ");
    append_prometheus_value(out_, value);
    out_.push_back('\n');
  }

  void gauge(std::string_view name, std::string_view help, double value) {
    header(name, help, "gauge");
    sample(name, {}, value);
  }

  void created(std::string_view base, std::string_view help,
               std::initializer_list<std::string_view> extras) {
    const std::string name = fmt::format("{}_created", base);
    header(name, help, "gauge");
    for (const std::string_view extra : extras) sample(name, extra, s_.created_unix);
  }

  void counter(std::string_view base, std::string_view help, double value) {
    const std::string name = fmt::format("{}_total", base);
    header(name, help, "counter");
    sample(name, {}, value);
    created(base, help, {std::string_view()});
  }

  void histogram(std::string_view base, std::string_view help, const Histogram& h) {
    header(base, help, "histogram");
    const std::string bucket = fmt::format("{}_bucket", base);
    std::string le;
    uint64_t cumulative = 0;
    const auto bounds = h.upper_bounds();
    const auto counts = h.bucket_counts();
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i];
      le = "le=\"";
      if (i < bounds.size()) {
        append_prometheus_value(le, bounds[i]);
      } else {
        le.append("+Inf");
      }
      le.push_back('"');
      sample(bucket, le, static_cast<double>(cumulative));
    }
    sample(fmt::format("{}_count", base), {}, static_cast<double>(h.count()));
    sample(fmt::format("{}_sum", base), {}, h.sum());
    created(base, help, {std::string_view()});
  }

 private:
  const MetricsSnapshot& s_;
  std::string& out_;
};

std::string_view python_bool(bool value) {
  return value ? "True" : "False";
}

}  // namespace

void append_prometheus_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out.append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out.append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  std::string repr;
  append_json_double(repr, value);  // Python's repr for finite values
  const size_t dot = repr.find('.');
  if (value > 0 && dot != std::string::npos && dot > 6) {
    // Go switches to exponents sooner than Python: d.ddd...e+0X.
    std::string mantissa =
        fmt::format("{}.{}{}", repr[0], repr.substr(1, dot - 1), repr.substr(dot + 1));
    while (!mantissa.empty() && (mantissa.back() == '0' || mantissa.back() == '.')) {
      mantissa.pop_back();
    }
    out.append(mantissa).append(fmt::format("e+0{}", dot - 1));
    return;
  }
  out.append(repr);
}

std::string render_metrics(const MetricsSnapshot& s) {
  std::string out;
  out.reserve(32 * 1024);
  Writer w(s, out);
  const EngineMetrics& m = *s.engine;

  w.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", s.running);
  w.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", s.waiting);
  if (s.show_hidden_metrics) {
    // Deprecated in vLLM 0.9.2 and hidden since 0.11 unless asked for, with these texts.
    w.gauge("vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use "
            "vllm:kv_cache_usage_perc instead.",
            s.kv_cache_usage);
    w.counter("vllm:gpu_prefix_cache_queries",
              "GPU prefix cache queries, in terms of number of queriedtokens. DEPRECATED: Use "
              "vllm:prefix_cache_queries instead.",
              static_cast<double>(m.prefix_cache_queries));
    w.counter("vllm:gpu_prefix_cache_hits",
              "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use "
              "vllm:prefix_cache_hits instead.",
              static_cast<double>(m.prefix_cache_hits));
  }
  w.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
          s.kv_cache_usage);
  w.counter("vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            static_cast<double>(m.prefix_cache_queries));
  w.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            static_cast<double>(m.prefix_cache_hits));
  w.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            static_cast<double>(m.num_preemptions));
  w.counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
            static_cast<double>(m.prompt_tokens));
  w.counter("vllm:generation_tokens", "Number of generation tokens processed.",
            static_cast<double>(m.generation_tokens));

  constexpr std::string_view kSuccessHelp = "Count of successfully processed requests.";
  w.header("vllm:request_success_total", kSuccessHelp, "counter");
  w.sample("vllm:request_success_total", "finished_reason=\"stop\"",
           static_cast<double>(m.success_stop));
  w.sample("vllm:request_success_total", "finished_reason=\"length\"",
           static_cast<double>(m.success_length));
  w.sample("vllm:request_success_total", "finished_reason=\"abort\"",
           static_cast<double>(m.success_abort));
  w.created(
      "vllm:request_success", kSuccessHelp,
      {"finished_reason=\"stop\"", "finished_reason=\"length\"", "finished_reason=\"abort\""});

  w.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
              m.request_prompt_tokens);
  w.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
              m.request_generation_tokens);
  w.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
              m.iteration_tokens);
  w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              m.time_to_first_token);
  w.histogram("vllm:time_per_output_token_seconds",
              "Histogram of time per output token in seconds.DEPRECATED: Use "
              "vllm:inter_token_latency_seconds instead.",
              m.inter_token_latency);
  w.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
              m.inter_token_latency);
  w.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
              m.e2e_latency);
  w.histogram("vllm:request_queue_time_seconds",
              "Histogram of time spent in WAITING phase for request.", m.queue_time);
  w.histogram("vllm:request_inference_time_seconds",
              "Histogram of time spent in RUNNING phase for request.", m.inference_time);
  w.histogram("vllm:request_prefill_time_seconds",
              "Histogram of time spent in PREFILL phase for request.", m.prefill_time);
  w.histogram("vllm:request_decode_time_seconds",
              "Histogram of time spent in DECODE phase for request.", m.decode_time);

  if (s.lora_enabled) {
    w.header("vllm:lora_requests_info", "Running stats on lora requests.", "gauge");
    for (const LoraInfoSeries& series : s.lora_series) {
      out.append("vllm:lora_requests_info{max_lora=\"");
      out.append(std::to_string(s.max_lora));
      out.append("\",running_lora_adapters=\"");
      append_label_value(out, series.running_adapters);
      out.append("\",waiting_lora_adapters=\"");
      append_label_value(out, series.waiting_adapters);
      out.append("\"} ");
      const double age = std::chrono::duration<double>(s.steady_now - series.updated).count();
      append_prometheus_value(out, s.unix_now - age);
      out.push_back('\n');
    }
  }

  w.header("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge");
  out.append(
      fmt::format("vllm:cache_config_info{{block_size=\"{}\",cache_dtype=\"auto\","
                  "calculate_kv_scales=\"False\",cpu_offload_gb=\"0\",enable_prefix_caching=\"{}\","
                  "engine=\"0\",gpu_memory_utilization=\"0.9\",is_attention_free=\"False\","
                  "num_cpu_blocks=\"None\",num_gpu_blocks=\"{}\",num_gpu_blocks_override=\"{}\","
                  "prefix_caching_hash_algo=\"builtin\",sliding_window=\"None\",swap_space=\"4\","
                  "swap_space_bytes=\"4294967296\"}} 1.0\n",
                  s.block_size, python_bool(s.enable_prefix_caching), s.num_gpu_blocks,
                  s.num_gpu_blocks_override ? std::to_string(*s.num_gpu_blocks_override) : "None"));
  return out;
}

}  // namespace infergate::sim
