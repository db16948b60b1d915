#include "sim/metrics_text.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

namespace infergate::sim {
namespace {

const TimePoint kNow{std::chrono::seconds(5000)};

std::string value_text(double v) {
  std::string out;
  append_prometheus_value(out, v);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

struct Fixture {
  EngineMetrics metrics{4096};
  std::vector<LoraInfoSeries> series{{"", "", kNow - std::chrono::seconds(10)},
                                     {"a,b", "c", kNow - std::chrono::milliseconds(500)}};
  MetricsSnapshot snapshot() {
    MetricsSnapshot s;
    s.model_name = "my/model";
    s.running = 3;
    s.waiting = 2;
    s.kv_cache_usage = 0.25;
    s.engine = &metrics;
    s.block_size = 16;
    s.num_gpu_blocks = 2048;
    s.lora_enabled = true;
    s.max_lora = 4;
    s.lora_series = series;
    s.steady_now = kNow;
    s.unix_now = 1738217335.5;
    s.created_unix = 1738217000.0;
    return s;
  }
};

}  // namespace

TEST_CASE("metrics: values as prometheus_client's floatToGoString") {
  CHECK(value_text(0) == "0.0");
  CHECK(value_text(3) == "3.0");
  CHECK(value_text(0.25) == "0.25");
  CHECK(value_text(0.001) == "0.001");
  CHECK(value_text(2560) == "2560.0");
  CHECK(value_text(123456) == "123456.0");
  CHECK(value_text(1234567) == "1.234567e+06");
  CHECK(value_text(1000000) == "1e+06");
  CHECK(value_text(1738217335.8407154) == "1.7382173358407154e+09");
  CHECK(value_text(1e-05) == "1e-05");
  CHECK(value_text(std::numeric_limits<double>::infinity()) == "+Inf");
}

TEST_CASE("metrics: vLLM V1 gauges with engine and model_name labels") {
  Fixture f;
  const std::string text = render_metrics(f.snapshot());
  CHECK(has_line(text,
                 "# HELP vllm:num_requests_running Number of requests in model execution "
                 "batches."));
  CHECK(has_line(text, "# TYPE vllm:num_requests_running gauge"));
  CHECK(has_line(text, R"(vllm:num_requests_running{engine="0",model_name="my/model"} 3.0)"));
  CHECK(has_line(text, R"(vllm:num_requests_waiting{engine="0",model_name="my/model"} 2.0)"));
  CHECK(has_line(text, R"(vllm:kv_cache_usage_perc{engine="0",model_name="my/model"} 0.25)"));
  // The deprecated names only with --show-hidden-metrics-for-version, as in vLLM 0.11.
  CHECK(text.find("vllm:gpu_cache_usage_perc") == std::string::npos);
  CHECK(text.find("vllm:gpu_prefix_cache") == std::string::npos);
  MetricsSnapshot hidden = f.snapshot();
  hidden.show_hidden_metrics = true;
  const std::string with_hidden = render_metrics(hidden);
  CHECK(
      has_line(with_hidden, R"(vllm:gpu_cache_usage_perc{engine="0",model_name="my/model"} 0.25)"));
  CHECK(has_line(with_hidden,
                 R"(vllm:gpu_prefix_cache_queries_total{engine="0",model_name="my/model"} 0.0)"));
}

TEST_CASE("metrics: prefix cache, preemption and timing families from the engine") {
  Fixture f;
  f.metrics.prefix_cache_queries = 400;
  f.metrics.prefix_cache_hits = 144;
  f.metrics.num_preemptions = 3;
  f.metrics.inter_token_latency.observe(0.02);
  f.metrics.prefill_time.observe(0.5);
  f.metrics.iteration_tokens.observe(100);
  const std::string text = render_metrics(f.snapshot());
  CHECK(
      has_line(text, R"(vllm:prefix_cache_queries_total{engine="0",model_name="my/model"} 400.0)"));
  CHECK(has_line(text, R"(vllm:prefix_cache_hits_total{engine="0",model_name="my/model"} 144.0)"));
  CHECK(has_line(text, R"(vllm:num_preemptions_total{engine="0",model_name="my/model"} 3.0)"));
  CHECK(has_line(text, "# TYPE vllm:inter_token_latency_seconds histogram"));
  CHECK(has_line(
      text, R"(vllm:inter_token_latency_seconds_count{engine="0",model_name="my/model"} 1.0)"));
  // The deprecated name carries the same observations.
  CHECK(has_line(
      text, R"(vllm:time_per_output_token_seconds_count{engine="0",model_name="my/model"} 1.0)"));
  CHECK(has_line(text,
                 R"(vllm:request_prefill_time_seconds_sum{engine="0",model_name="my/model"} 0.5)"));
  CHECK(has_line(text, "# TYPE vllm:request_decode_time_seconds histogram"));
  CHECK(has_line(text, "# TYPE vllm:request_inference_time_seconds histogram"));
  CHECK(has_line(
      text,
      R"(vllm:iteration_tokens_total_bucket{engine="0",le="128.0",model_name="my/model"} 1.0)"));
}

TEST_CASE("metrics: counters with _total and a _created gauge family") {
  Fixture f;
  f.metrics.prompt_tokens = 148;
  f.metrics.success_length = 4;
  const std::string text = render_metrics(f.snapshot());
  CHECK(has_line(text, "# TYPE vllm:prompt_tokens_total counter"));
  CHECK(has_line(text, R"(vllm:prompt_tokens_total{engine="0",model_name="my/model"} 148.0)"));
  CHECK(has_line(text, "# TYPE vllm:prompt_tokens_created gauge"));
  CHECK(has_line(text,
                 R"(vllm:prompt_tokens_created{engine="0",model_name="my/model"} 1.738217e+09)"));
  CHECK(has_line(text, "# TYPE vllm:generation_tokens_total counter"));
  CHECK(has_line(text, R"(vllm:request_success_total{engine="0",finished_reason="length",)"
                       R"(model_name="my/model"} 4.0)"));
  CHECK(has_line(text, R"(vllm:request_success_total{engine="0",finished_reason="abort",)"
                       R"(model_name="my/model"} 0.0)"));
}

TEST_CASE("metrics: histograms are cumulative, end in +Inf, then count and sum") {
  Fixture f;
  f.metrics.time_to_first_token.observe(0.015);
  f.metrics.time_to_first_token.observe(3.0);
  const std::string text = render_metrics(f.snapshot());
  CHECK(has_line(text, "# TYPE vllm:time_to_first_token_seconds histogram"));
  CHECK(has_line(text, R"(vllm:time_to_first_token_seconds_bucket{engine="0",le="0.01",)"
                       R"(model_name="my/model"} 0.0)"));
  CHECK(has_line(text, R"(vllm:time_to_first_token_seconds_bucket{engine="0",le="0.02",)"
                       R"(model_name="my/model"} 1.0)"));
  CHECK(has_line(text, R"(vllm:time_to_first_token_seconds_bucket{engine="0",le="5.0",)"
                       R"(model_name="my/model"} 2.0)"));
  CHECK(has_line(text, R"(vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",)"
                       R"(model_name="my/model"} 2.0)"));
  CHECK(has_line(
      text, R"(vllm:time_to_first_token_seconds_count{engine="0",model_name="my/model"} 2.0)"));
  CHECK(has_line(
      text, R"(vllm:time_to_first_token_seconds_sum{engine="0",model_name="my/model"} 3.015)"));
  CHECK(has_line(text, "# TYPE vllm:e2e_request_latency_seconds histogram"));
  const size_t count_at = text.find("vllm:time_to_first_token_seconds_count");
  const size_t inf_at =
      text.find("vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\"");
  CHECK(inf_at < count_at);
}

TEST_CASE("metrics: lora_requests_info carries timestamps, one series per adapter set") {
  Fixture f;
  const std::string text = render_metrics(f.snapshot());
  CHECK(has_line(text, "# TYPE vllm:lora_requests_info gauge"));
  CHECK(has_line(text, R"(vllm:lora_requests_info{max_lora="4",running_lora_adapters="",)"
                       R"(waiting_lora_adapters=""} 1.7382173255e+09)"));
  CHECK(has_line(text, R"(vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",)"
                       R"(waiting_lora_adapters="c"} 1.738217335e+09)"));

  MetricsSnapshot no_lora = f.snapshot();
  no_lora.lora_enabled = false;
  CHECK(render_metrics(no_lora).find("lora_requests_info") == std::string::npos);
}

TEST_CASE("metrics: cache_config_info reports blocks and the override") {
  Fixture f;
  MetricsSnapshot s = f.snapshot();
  std::string text = render_metrics(s);
  CHECK(text.find(R"(vllm:cache_config_info{block_size="16",)") != std::string::npos);
  CHECK(text.find(R"(num_gpu_blocks="2048",num_gpu_blocks_override="None")") != std::string::npos);
  s.num_gpu_blocks = 500;
  s.num_gpu_blocks_override = 500;
  text = render_metrics(s);
  CHECK(text.find(R"(num_gpu_blocks="500",num_gpu_blocks_override="500")") != std::string::npos);
  CHECK(text.find("\"} 1.0\n") != std::string::npos);
}

TEST_CASE("metrics: every sample line belongs to a family declared above it") {
  Fixture f;
  const std::string text = render_metrics(f.snapshot());
  std::istringstream in(text);
  std::string current;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("# TYPE ")) {
      current = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.starts_with("#")) continue;
    INFO(line);
    CHECK(line.starts_with(current));
  }
}

}  // namespace infergate::sim
