#include "sim/options.h"

#include <doctest/doctest.h>

#include <string_view>
#include <vector>

namespace infergate::sim {
namespace {

ParseOutcome parse(std::vector<std::string_view> args) {
  return parse_options(args);
}

SimOptions parse_ok(std::vector<std::string_view> args) {
  const ParseOutcome outcome = parse(std::move(args));
  INFO(outcome.error);
  REQUIRE(outcome.action == ParseOutcome::Action::kRun);
  return outcome.options;
}

std::string parse_error(std::vector<std::string_view> args) {
  const ParseOutcome outcome = parse(std::move(args));
  REQUIRE(outcome.action == ParseOutcome::Action::kError);
  return outcome.error;
}

}  // namespace

TEST_CASE("options: defaults as documented") {
  const SimOptions o = parse_ok({});
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 8000);
  CHECK(o.model == "meta-llama/Llama-3.1-8B-Instruct");
  CHECK(o.max_model_len == 131072);
  CHECK(o.max_num_seqs == 1024);
  CHECK(o.max_num_batched_tokens == 8192);
  CHECK(o.enable_chunked_prefill);
  CHECK(o.enable_prefix_caching);
  CHECK(o.enable_prompt_tokens_details);
  CHECK(o.block_size == 16);
  CHECK_FALSE(o.fixed_latency());
  CHECK(o.step_base_ms == 7.0);
  CHECK(o.step_prefill_token_ms == 0.03);
  CHECK(o.step_decode_seq_ms == 0.05);
  CHECK(o.lora_load_ms == 100.0);
  CHECK(o.output_tokens == 16);
  CHECK(o.output_len_dist.kind == OutputLengthDist::Kind::kFixed);
  CHECK(o.time_scale == 1.0);
  CHECK(o.effective_served_names() == std::vector<std::string>{o.model});
  CHECK_FALSE(o.lora_enabled());
  CHECK(o.effective_num_gpu_blocks() == kDefaultNumGpuBlocks);
}

TEST_CASE("options: vllm serve style command line") {
  const SimOptions o =
      parse_ok({"serve", "org/llama", "--port", "0", "--served-model-name", "a", "b",
                "--lora-modules", "x=/p/x", "y=/p/y", "--max_model_len=128",
                "--num-gpu-blocks-override", "64", "--dtype", "bfloat16", "--trust-remote-code"});
  CHECK(o.model == "org/llama");
  CHECK(o.port == 0);
  CHECK(o.effective_served_names() == std::vector<std::string>{"a", "b"});
  REQUIRE(o.lora_modules.size() == 2);
  CHECK(o.lora_modules[1].name == "y");
  CHECK(o.lora_modules[1].path == "/p/y");
  CHECK(o.lora_enabled());
  CHECK(o.max_model_len == 128);
  CHECK(o.effective_num_gpu_blocks() == 64);
}

TEST_CASE("options: LoRA modules in vLLM's JSON form") {
  const SimOptions o =
      parse_ok({"--lora-modules", R"({"name":"sql","path":"/l","base_model_name":"base"})"});
  REQUIRE(o.lora_modules.size() == 1);
  CHECK(o.lora_modules[0].name == "sql");
  CHECK(o.lora_modules[0].base_model_name == "base");
}

TEST_CASE("options: simulator knobs and faults") {
  const SimOptions o = parse_ok({"--pod-name",
                                 "p1",
                                 "--ttft-ms",
                                 "2.5",
                                 "--itl-ms=0",
                                 "--time-scale",
                                 "0.1",
                                 "--fail-mid-stream-after",
                                 "3",
                                 "--error-rate",
                                 "0.5",
                                 "--error-status",
                                 "503",
                                 "--refuse-after",
                                 "10",
                                 "--metrics-fail",
                                 "--metrics-waiting",
                                 "4",
                                 "--metrics-kv-usage",
                                 "0.75"});
  CHECK(o.pod_name == "p1");
  CHECK(o.fixed_latency());
  CHECK(o.ttft_ms == 2.5);
  CHECK(o.itl_ms == 0);
  CHECK(o.time_scale == 0.1);
  CHECK(o.fail_mid_stream_after == 3);
  CHECK(o.error_rate == 0.5);
  CHECK(o.error_status == 503);
  CHECK(o.refuse_after == 10);
  CHECK(o.metrics_fail);
  CHECK(o.metrics_waiting == 4);
  CHECK(o.metrics_kv_usage == 0.75);
  CHECK_FALSE(o.metrics_running.has_value());
}

TEST_CASE("options: engine model knobs") {
  const SimOptions o = parse_ok(
      {"--max-num-batched-tokens", "2048", "--no-enable-chunked-prefill", "--max-model-len", "2048",
       "--no-enable-prefix-caching", "--step-base-ms", "5", "--step-prefill-token-ms", "0.02",
       "--step-decode-seq-ms", "0.1", "--lora-load-ms", "30", "--output-len-dist", "lognormal:0.5",
       "--no-enable-prompt-tokens-details", "--show-hidden-metrics-for-version", "0.10"});
  CHECK(o.max_num_batched_tokens == 2048);
  CHECK_FALSE(o.enable_chunked_prefill);
  CHECK_FALSE(o.enable_prefix_caching);
  CHECK(o.step_base_ms == 5);
  CHECK(o.step_prefill_token_ms == 0.02);
  CHECK(o.step_decode_seq_ms == 0.1);
  CHECK(o.lora_load_ms == 30);
  CHECK(o.output_len_dist.kind == OutputLengthDist::Kind::kLognormal);
  CHECK(o.output_len_dist.sigma == 0.5);
  CHECK_FALSE(o.enable_prompt_tokens_details);
  CHECK(o.show_hidden_metrics_for_version == "0.10");
  CHECK_FALSE(o.fixed_latency());
  // Only --itl-ms: fixed-latency mode, ttft at its default.
  const SimOptions itl = parse_ok({"--itl-ms", "3"});
  CHECK(itl.fixed_latency());
  CHECK_FALSE(itl.ttft_ms.has_value());
  CHECK(parse_ok({"--output-len-dist", "exponential"}).output_len_dist.kind ==
        OutputLengthDist::Kind::kExponential);
}

TEST_CASE("options: configurations vLLM refuses") {
  // max_model_len must fit the KV cache.
  CHECK(parse_error({"--num-gpu-blocks-override", "10"})
            .starts_with("The model's max seq len (131072) is larger than the maximum number of "
                         "tokens that can be stored in KV cache (160)."));
  CHECK(parse_ok({"--num-gpu-blocks-override", "10", "--max-model-len", "160"}).max_model_len ==
        160);
  // Without chunked prefill a whole prompt must fit one step.
  CHECK(parse_error({"--no-enable-chunked-prefill"})
            .starts_with("max_num_batched_tokens (8192) is smaller than max_model_len (131072)."));
  CHECK(parse_error({"--output-len-dist", "zipf"}).starts_with("--output-len-dist: expected"));
  CHECK(parse_error({"--output-len-dist", "fixed:3"}).starts_with("--output-len-dist:"));
}

TEST_CASE("options: help and version") {
  CHECK(parse({"--port", "1", "--help"}).action == ParseOutcome::Action::kHelp);
  CHECK(parse({"-h"}).action == ParseOutcome::Action::kHelp);
  CHECK(parse({"--version"}).action == ParseOutcome::Action::kVersion);
  const std::string help = help_text();
  for (const std::string_view flag : {"--host",
                                      "--port",
                                      "--model",
                                      "--served-model-name",
                                      "--lora-modules",
                                      "--max-model-len",
                                      "--max-num-seqs",
                                      "--max-num-batched-tokens",
                                      "--enable-chunked-prefill",
                                      "--enable-prefix-caching",
                                      "--enable-prompt-tokens-details",
                                      "--show-hidden-metrics-for-version",
                                      "--step-base-ms",
                                      "--step-prefill-token-ms",
                                      "--step-decode-seq-ms",
                                      "--lora-load-ms",
                                      "--output-len-dist",
                                      "--max-loras",
                                      "--block-size",
                                      "--num-gpu-blocks-override",
                                      "--pod-name",
                                      "--ttft-ms",
                                      "--itl-ms",
                                      "--output-tokens",
                                      "--time-scale",
                                      "--fail-mid-stream-after",
                                      "--error-rate",
                                      "--error-status",
                                      "--refuse-after",
                                      "--startup-delay-ms",
                                      "--metrics-delay-ms",
                                      "--metrics-fail",
                                      "--metrics-waiting",
                                      "--metrics-running",
                                      "--metrics-kv-usage",
                                      "--keep-alive-timeout-s",
                                      "--version"}) {
    INFO(flag);
    CHECK(help.find(flag) != std::string::npos);
  }
}

TEST_CASE("options: errors name the flag") {
  CHECK(parse_error({"--nope"}) == "unknown flag '--nope'");
  CHECK(parse_error({"--port"}) == "--port: missing value");
  CHECK(parse_error({"--port", "70000"}).starts_with("--port: expected an integer in 0..65535"));
  CHECK(parse_error({"--port", "12x"}).starts_with("--port:"));
  CHECK(parse_error({"--max-model-len", "0"}).starts_with("--max-model-len:"));
  CHECK(parse_error({"--error-rate", "1.5"}).starts_with("--error-rate:"));
  CHECK(parse_error({"--error-status", "200"}).starts_with("--error-status:"));
  CHECK(parse_error({"--metrics-kv-usage", "2"}).starts_with("--metrics-kv-usage:"));
  CHECK(parse_error({"--ttft-ms", "-1"}).starts_with("--ttft-ms:"));
  CHECK(parse_error({"--served-model-name", "--port", "1"}) ==
        "--served-model-name: missing value");
  CHECK(parse_error({"--lora-modules", "nopath"}).starts_with("--lora-modules: expected"));
  CHECK(parse_error({"--metrics-fail=1"}) == "--metrics-fail: takes no value");
  CHECK(parse_error({"m1", "m2"}) == "unexpected argument 'm2'");
  CHECK(parse_error({"--log-level", "loud"}).starts_with("--log-level:"));
  CHECK(parse_error({"--served-model-name", "a", "--lora-modules", "a=/x"})
            .starts_with("--lora-modules:"));
}

}  // namespace infergate::sim
