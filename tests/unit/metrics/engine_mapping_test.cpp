#include "metrics/engine_mapping.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "metrics_test_util.h"

namespace infergate::metrics {
namespace {

using testing::read_fixture;
namespace field = engine_field;

EngineMetrics map_text(std::string_view text, EngineType type, MappingOptions options = {}) {
  ParsedMetrics parsed;
  parse_prometheus_text(text, parsed);
  REQUIRE(parsed.errors.empty());
  return map_engine_metrics(parsed, type, options);
}

using Names = std::vector<std::string>;

TEST_CASE("engine type names") {
  CHECK(parse_engine_type("vllm") == EngineType::kVllm);
  CHECK(parse_engine_type("vLLM") == EngineType::kVllm);
  CHECK(parse_engine_type("sglang") == EngineType::kSglang);
  CHECK(parse_engine_type("trtllm") == EngineType::kTrtllm);
  CHECK(parse_engine_type("trtllm-serve") == EngineType::kTrtllm);
  CHECK(parse_engine_type("tensorrt-llm") == EngineType::kTrtllm);
  CHECK(parse_engine_type("triton-tensorrt-llm") == EngineType::kTrtllm);
  CHECK(parse_engine_type("auto") == EngineType::kAuto);
  CHECK_FALSE(parse_engine_type("").has_value());
  CHECK_FALSE(parse_engine_type("tgi").has_value());
  CHECK_FALSE(parse_engine_type("vllm ").has_value());
  for (const EngineType t :
       {EngineType::kAuto, EngineType::kVllm, EngineType::kSglang, EngineType::kTrtllm}) {
    CHECK(parse_engine_type(engine_type_name(t)) == t);
  }
  CHECK(kEngineTypeLabel == "inference.networking.k8s.io/engine-type");
}

TEST_CASE("vLLM V0 full page: counts sum over model_name series, gpu_cache_usage_perc") {
  const std::string text = read_fixture("vllm-v0-metrics-full.txt");
  const EngineMetrics m = map_text(text, EngineType::kAuto);
  CHECK(m.engine == EngineType::kVllm);
  CHECK(m.waiting == 5.0);  // 2.0 for the served model + 3.0 for the hand-added other/OTHER
  CHECK(m.running == 3.0);
  CHECK(m.kv_cache_usage == 0.0026235242675994863);
  CHECK(m.block_size == 16);
  CHECK(m.num_gpu_blocks == 4574);
  CHECK_FALSE(m.has_lora_info);
  CHECK(m.missing == field::kLoraInfo);
  CHECK(m.reporting());
  CHECK(describe_missing(m.missing) == "lora_info");

  // With a model filter the other model's queue is left out.
  const EngineMetrics filtered = map_text(
      text, EngineType::kVllm, {.model_name = "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8"});
  CHECK(filtered.waiting == 2.0);
  CHECK(filtered.running == 3.0);
  CHECK(filtered.block_size == 16);  // cache_config_info has no model_name label
}

TEST_CASE("vLLM V0 excerpt: lora info with max_lora 0 and no adapters") {
  const std::string text = read_fixture("vllm-v0-metrics-excerpt.txt");
  const EngineMetrics m = map_text(text, EngineType::kVllm);
  CHECK(m.has_lora_info);
  CHECK(m.max_lora == 0);
  CHECK(m.running_adapters.empty());
  CHECK(m.waiting_adapters.empty());
  CHECK(m.waiting == 0.0);
  CHECK(m.running == 0.0);
  CHECK(m.kv_cache_usage == 0.0);
  CHECK(m.block_size == 16);
  CHECK(m.num_gpu_blocks == 81767);
  CHECK(m.missing == 0);
  CHECK(describe_missing(m.missing).empty());
}

// Hand-written (no real V1 capture has been attributed, see the fixtures' SOURCES.md): two
// data-parallel engines, V1 names next to the deprecated one, stale lora series kept by
// prometheus_client with older timestamps, the newest written first.
constexpr std::string_view kVllmV1Page =
    R"(# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 6.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.9
vllm:gpu_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.9
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora, chat-lora",waiting_lora_adapters="tone"} 1.7500000126e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora",waiting_lora_adapters=""} 1.7500000015e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7499999e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="2048",num_cpu_blocks="None"} 1.0
vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="2048",num_cpu_blocks="None"} 1.0
)";

TEST_CASE("vLLM V1: engine series combine, kv_cache_usage_perc wins, newest lora series wins") {
  const EngineMetrics m = map_text(kVllmV1Page, EngineType::kVllm);
  CHECK(m.waiting == 3.0);
  CHECK(m.running == 10.0);
  CHECK(m.kv_cache_usage == 0.375);  // mean of the two engines; the deprecated name is ignored
  CHECK(m.has_lora_info);
  CHECK(m.max_lora == 4);
  CHECK(m.running_adapters == Names{"sql-lora", "chat-lora"});
  CHECK(m.waiting_adapters == Names{"tone"});
  CHECK(m.block_size == 16);
  CHECK(m.num_gpu_blocks == 4096);
  CHECK(m.missing == 0);

  // Order does not matter: the newest written last wins as well.
  std::string reordered(kVllmV1Page);
  const std::string newest =
      "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"sql-lora, "
      "chat-lora\",waiting_lora_adapters=\"tone\"} 1.7500000126e+09\n";
  const size_t at = reordered.find(newest);
  REQUIRE(at != std::string::npos);
  reordered.erase(at, newest.size());
  reordered += newest;
  const EngineMetrics r = map_text(reordered, EngineType::kAuto);
  CHECK(r.running_adapters == Names{"sql-lora", "chat-lora"});
}

TEST_CASE("vLLM lora details") {
  SUBCASE("a tie goes to the later series") {
    const EngineMetrics m = map_text(
        "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\","
        "waiting_lora_adapters=\"\"} 100\n"
        "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"b\","
        "waiting_lora_adapters=\"\"} 100\n",
        EngineType::kVllm);
    CHECK(m.running_adapters == Names{"b"});
  }
  SUBCASE("empty items and blanks are dropped; bad max_lora reads as 0") {
    const EngineMetrics m = map_text(
        "vllm:lora_requests_info{max_lora=\"-1\",running_lora_adapters=\" ,a,,  b ,\","
        "waiting_lora_adapters=\",\"} 1\n",
        EngineType::kVllm);
    CHECK(m.has_lora_info);
    CHECK(m.max_lora == 0);
    CHECK(m.running_adapters == Names{"a", "b"});
    CHECK(m.waiting_adapters.empty());
  }
  SUBCASE("NaN timestamps are ignored") {
    const EngineMetrics m = map_text(
        "vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"a\","
        "waiting_lora_adapters=\"\"} NaN\n",
        EngineType::kVllm);
    CHECK_FALSE(m.has_lora_info);
    CHECK((m.missing & field::kLoraInfo) != 0);
  }
}

TEST_CASE("SGLang page") {
  const std::string text = read_fixture("sglang-metrics.txt");
  const EngineMetrics m = map_text(text, EngineType::kAuto);
  CHECK(m.engine == EngineType::kSglang);
  CHECK(m.waiting == 2826.0);
  CHECK(m.running == 162.0);
  CHECK(m.kv_cache_usage == 0.28);
  CHECK(m.block_size == 0);
  CHECK(m.num_gpu_blocks == 0);
  CHECK(m.missing == (field::kBlockSize | field::kNumGpuBlocks));  // no lora bit for SGLang
  CHECK(m.reporting());
  CHECK(describe_missing(m.missing) == "block_size, num_gpu_blocks");
}

TEST_CASE("SGLang cache geometry: info labels or gauges; dp ranks sum") {
  const EngineMetrics info = map_text(
      "sglang:cache_config_info{model_name=\"m\",page_size=\"64\",num_pages=\"1000\"} 1\n"
      "sglang:num_queue_reqs{dp_rank=\"0\",model_name=\"m\"} 2\n"
      "sglang:num_queue_reqs{dp_rank=\"1\",model_name=\"m\"} 5\n"
      "sglang:num_running_reqs{dp_rank=\"0\",model_name=\"m\"} 1\n"
      "sglang:token_usage{dp_rank=\"0\",model_name=\"m\"} 0.1\n"
      "sglang:token_usage{dp_rank=\"1\",model_name=\"m\"} 0.3\n",
      EngineType::kSglang);
  CHECK(info.block_size == 64);
  CHECK(info.num_gpu_blocks == 1000);
  CHECK(info.waiting == 7);
  CHECK(info.running == 1);
  CHECK(info.kv_cache_usage == doctest::Approx(0.2));
  CHECK(info.missing == 0);

  const EngineMetrics gauges = map_text(
      "sglang:page_size{model_name=\"m\"} 1.0\nsglang:num_pages{model_name=\"m\"} 250000.0\n",
      EngineType::kSglang);
  CHECK(gauges.block_size == 1);
  CHECK(gauges.num_gpu_blocks == 250000);
  CHECK(gauges.missing == field::kRequired);
  CHECK_FALSE(gauges.reporting());
}

TEST_CASE("Triton TensorRT-LLM page") {
  const std::string text = read_fixture("trtllm-triton-metrics-readme-sample.txt");
  const EngineMetrics m = map_text(text, EngineType::kAuto);
  CHECK(m.engine == EngineType::kTrtllm);
  CHECK(m.waiting == 1);
  CHECK(m.running == 1);              // request_type="scheduled"
  CHECK(m.kv_cache_usage == 0.4875);  // the "fraction" series, as published
  CHECK(m.block_size == 64);          // tokens_per
  CHECK(m.num_gpu_blocks == 6239);    // max
  CHECK(m.missing == 0);
}

TEST_CASE("TensorRT-LLM: usage from used/max blocks when there is no fraction series") {
  const EngineMetrics m = map_text(
      "nv_trt_llm_request_metrics{model=\"tensorrt_llm\",request_type=\"waiting\",version=\"1\"} "
      "0\n"
      "nv_trt_llm_request_metrics{model=\"tensorrt_llm\",request_type=\"scheduled\",version=\"1\"} "
      "2\n"
      "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"used\",model=\"tensorrt_llm\","
      "version=\"1\"} 1500\n"
      "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\",model=\"tensorrt_llm\","
      "version=\"1\"} 6000\n",
      EngineType::kTrtllm);
  CHECK(m.kv_cache_usage == 0.25);
  CHECK(m.running == 2);
  CHECK(m.num_gpu_blocks == 6000);
  CHECK(m.missing == field::kBlockSize);
}

TEST_CASE("trtllm-serve names (and Dynamo's trtllm: spelling)") {
  for (const std::string_view prefix : {"trtllm_", "trtllm:"}) {
    CAPTURE(prefix);
    std::string page;
    for (const auto& [name, value] : {std::pair{"num_requests_waiting", "3"},
                                      {"num_requests_running", "8"},
                                      {"kv_cache_utilization", "0.625"},
                                      {"kv_cache_tokens_per_block", "32"},
                                      {"kv_cache_max_blocks", "12000"}}) {
      page +=
          std::string(prefix) + name + "{engine_type=\"trtllm\",model_name=\"m\"} " + value + "\n";
    }
    const EngineMetrics m = map_text(page, EngineType::kAuto);
    CHECK(m.engine == EngineType::kTrtllm);
    CHECK(m.waiting == 3);
    CHECK(m.running == 8);
    CHECK(m.kv_cache_usage == 0.625);
    CHECK(m.block_size == 32);
    CHECK(m.num_gpu_blocks == 12000);
    CHECK(m.missing == 0);
  }
}

TEST_CASE("missing metrics are flagged, not silently zero") {
  SUBCASE("empty page") {
    const EngineMetrics m = map_text("", EngineType::kAuto);
    CHECK(m.engine == EngineType::kVllm);  // the default when nothing is recognised
    CHECK(m.missing ==
          (field::kRequired | field::kLoraInfo | field::kBlockSize | field::kNumGpuBlocks));
    CHECK_FALSE(m.reporting());
    CHECK(describe_missing(m.missing) ==
          "waiting, running, kv_cache_usage, lora_info, block_size, num_gpu_blocks");
  }
  SUBCASE("the wrong engine type") {
    const std::string text = read_fixture("vllm-v0-metrics-full.txt");
    const EngineMetrics m = map_text(text, EngineType::kSglang);
    CHECK(m.engine == EngineType::kSglang);
    CHECK((m.missing & field::kRequired) == field::kRequired);
    CHECK(m.waiting == 0);
  }
  SUBCASE("only some") {
    const EngineMetrics m =
        map_text("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.5\n", EngineType::kVllm);
    CHECK((m.missing & field::kRequired) == field::kRunning);
    CHECK_FALSE(m.reporting());
  }
  SUBCASE("not the engine's: openmetrics example") {
    const std::string text = read_fixture("openmetrics-example.txt");
    CHECK_FALSE(map_text(text, EngineType::kAuto).reporting());
  }
}

TEST_CASE("odd values: NaN and Inf ignored, counts and usage clamped") {
  const EngineMetrics m = map_text(
      "vllm:num_requests_waiting{engine=\"0\"} NaN\n"
      "vllm:num_requests_waiting{engine=\"1\"} +Inf\n"
      "vllm:num_requests_running{engine=\"0\"} -4\n"
      "vllm:num_requests_running{engine=\"1\"} 1e300\n"
      "vllm:kv_cache_usage_perc 1.7\n"
      "vllm:cache_config_info{block_size=\"None\",num_gpu_blocks=\"None\"} 1\n",
      EngineType::kVllm);
  CHECK(m.waiting == 0);
  CHECK((m.missing & field::kWaiting) != 0);  // no finite series at all
  CHECK(m.running == 1e9);
  CHECK(m.kv_cache_usage == 1.0);
  CHECK(m.block_size == 0);
  CHECK((m.missing & field::kBlockSize) != 0);
  CHECK((m.missing & field::kNumGpuBlocks) != 0);
}

TEST_CASE("detect_engine_type goes by the first recognised name") {
  const auto detect = [](std::string_view text) {
    ParsedMetrics p;
    parse_prometheus_text(text, p);
    return detect_engine_type(p);
  };
  CHECK(detect("python_gc 1\nsglang:x 1\nvllm:y 1\n") == EngineType::kSglang);
  CHECK(detect("nv_trt_llm_request_metrics 1\n") == EngineType::kTrtllm);
  CHECK(detect("trtllm_num_requests_waiting 1\n") == EngineType::kTrtllm);
  CHECK(detect("go_goroutines 1\n") == EngineType::kVllm);
}

}  // namespace
}  // namespace infergate::metrics
