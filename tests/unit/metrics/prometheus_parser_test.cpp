#include "metrics/prometheus_parser.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metrics_test_util.h"

namespace infergate::metrics {
namespace {

using testing::only_sample;
using testing::read_fixture;
using testing::samples_named;

ParsedMetrics parse(std::string_view text, ParseOptions options = {}) {
  ParsedMetrics out;
  parse_prometheus_text(text, out, options);
  return out;
}

std::string label_of(const ParsedMetrics& p, const Sample& s, std::string_view name) {
  const auto v = p.label(s, name);
  REQUIRE_MESSAGE(v.has_value(), "no label " << name << " on " << s.name);
  return std::string(*v);
}

TEST_CASE("prometheus docs example: the malformed UTF-8 line is reported, the rest parsed") {
  const std::string text = read_fixture("prometheus-text-format-example.txt");
  const ParsedMetrics p = parse(text);

  // Line 10, {"my.dotted.metric", "error.message"="Not Found"}, has no value.
  REQUIRE(p.errors.size() == 1);
  CHECK(p.error_count == 1);
  CHECK(p.errors[0].line == 10);
  CHECK(p.errors[0].reason == "missing value");
  CHECK(p.errors[0].column == 50);  // just past the closing brace
  CHECK(p.samples.size() == 20);
  CHECK(samples_named(p, "my.dotted.metric").empty());

  const auto requests = samples_named(p, "http_requests_total");
  REQUIRE(requests.size() == 2);
  CHECK(requests[0]->value == 1027);
  CHECK(requests[0]->has_timestamp);
  CHECK(requests[0]->timestamp_ms == 1395066363000);
  CHECK(label_of(p, *requests[0], "method") == "post");
  CHECK(label_of(p, *requests[0], "code") == "200");
  CHECK(requests[0]->line == 3);
  CHECK(requests[1]->value == 3);  // after extra whitespace
  CHECK(label_of(p, *requests[1], "code") == "400");

  const Sample& msdos = only_sample(p, "msdos_file_access_time_seconds");
  CHECK(label_of(p, msdos, "path") == "C:\\DIR\\FILE.TXT");
  CHECK(label_of(p, msdos, "error") == "Cannot find file:\n\"FILE.TXT\"");
  CHECK(msdos.value == doctest::Approx(1.458255915e9));
  CHECK_FALSE(msdos.has_timestamp);

  const Sample& minimal = only_sample(p, "metric_without_timestamp_and_labels");
  CHECK(minimal.value == 12.47);
  CHECK(minimal.label_count == 0);
  CHECK_FALSE(minimal.has_timestamp);

  const Sample& weird = only_sample(p, "something_weird");
  CHECK(std::isinf(weird.value));
  CHECK(weird.value > 0);
  CHECK(weird.timestamp_ms == -3982045);
  CHECK(label_of(p, weird, "problem") == "division by zero");

  const auto buckets = samples_named(p, "http_request_duration_seconds_bucket");
  REQUIRE(buckets.size() == 6);
  CHECK(label_of(p, *buckets[5], "le") == "+Inf");
  CHECK(buckets[5]->value == 144320);
  CHECK(only_sample(p, "http_request_duration_seconds_sum").value == 53423);
  CHECK(only_sample(p, "http_request_duration_seconds_count").value == 144320);

  const auto quantiles = samples_named(p, "rpc_duration_seconds");
  REQUIRE(quantiles.size() == 5);
  CHECK(label_of(p, *quantiles[4], "quantile") == "0.99");
  CHECK(quantiles[4]->value == 76656);
  CHECK(only_sample(p, "rpc_duration_seconds_sum").value == doctest::Approx(1.7560473e+07));

  REQUIRE(p.metadata.size() == 6);
  CHECK(p.metadata[0].kind == Metadata::Kind::kHelp);
  CHECK(p.metadata[0].name == "http_requests_total");
  CHECK(p.metadata[0].text == "The total number of HTTP requests.");
  CHECK(p.metadata[1].kind == Metadata::Kind::kType);
  CHECK(p.metadata[1].type == MetricType::kCounter);
  CHECK(p.metadata[3].type == MetricType::kHistogram);
  CHECK(p.metadata[5].type == MetricType::kSummary);
  CHECK_FALSE(p.saw_eof);
}

TEST_CASE("OpenMetrics spec example: UNIT, _created, counter family without _total, # EOF") {
  const std::string text = read_fixture("openmetrics-example.txt");
  for (const bool openmetrics : {false, true}) {
    CAPTURE(openmetrics);
    const ParsedMetrics p = parse(text, {.openmetrics = openmetrics});
    CHECK(p.errors.empty());
    CHECK(p.saw_eof);
    REQUIRE(p.samples.size() == 8);
    CHECK(p.samples[0].name == "acme_http_router_request_seconds_sum");
    CHECK(p.samples[0].value == 9036.32);
    CHECK(label_of(p, p.samples[0], "path") == "/api/v1");
    CHECK(label_of(p, p.samples[0], "method") == "GET");
    CHECK(p.samples[2].name == "acme_http_router_request_seconds_created");
    CHECK(p.samples[2].value == 1605281325.0);
    CHECK(only_sample(p, "go_goroutines").value == 69);
    CHECK(only_sample(p, "process_cpu_seconds_total").value == doctest::Approx(4.20072246e+06));
    REQUIRE(p.metadata.size() == 8);
    CHECK(p.metadata[1].kind == Metadata::Kind::kUnit);
    CHECK(p.metadata[1].text == "seconds");
    CHECK(p.metadata[0].type == MetricType::kSummary);
    CHECK(p.metadata[2].text == "Latency though all of ACME's HTTP request router.");
  }
}

TEST_CASE("vLLM V0 full page") {
  const std::string text = read_fixture("vllm-v0-metrics-full.txt");
  const ParsedMetrics p = parse(text);
  CHECK(p.errors.empty());
  CHECK(p.samples.size() == 125);
  CHECK(p.metadata.size() == 68);

  CHECK(only_sample(p, "process_virtual_memory_bytes").value == 3.9024848896e+010);
  CHECK(only_sample(p, "vllm:num_requests_running").value == 3.0);
  const auto waiting = samples_named(p, "vllm:num_requests_waiting");
  REQUIRE(waiting.size() == 2);
  CHECK(label_of(p, *waiting[1], "model_name") == "other/OTHER");
  CHECK(waiting[1]->line == 46);
  CHECK(only_sample(p, "vllm:gpu_cache_usage_perc").value == 0.0026235242675994863);

  const Sample& cache = only_sample(p, "vllm:cache_config_info");
  CHECK(cache.label_count == 10);
  CHECK(label_of(p, cache, "num_gpu_blocks") == "4574");
  CHECK(label_of(p, cache, "num_gpu_blocks_override") == "None");

  // Single-process prometheus_client order: buckets, _count, _sum.
  const auto ttft = samples_named(p, "vllm:time_to_first_token_seconds_bucket");
  REQUIRE(ttft.size() == 17);
  CHECK(label_of(p, *ttft[16], "le") == "+Inf");
  CHECK(only_sample(p, "vllm:time_to_first_token_seconds_sum").value == 0.5106480121612549);
  // Families declared by HELP/TYPE without samples are fine.
  CHECK(samples_named(p, "vllm:spec_decode_efficiency").empty());
}

TEST_CASE("vLLM V0 excerpt: lora info value is a timestamp, histograms start with _sum") {
  const std::string text = read_fixture("vllm-v0-metrics-excerpt.txt");
  const ParsedMetrics p = parse(text);
  CHECK(p.errors.empty());
  CHECK(p.samples.size() == 29);
  const Sample& lora = only_sample(p, "vllm:lora_requests_info");
  CHECK(lora.value == 1.7382173358407154e+09);
  CHECK(label_of(p, lora, "max_lora") == "0");
  CHECK(label_of(p, lora, "running_lora_adapters").empty());
  CHECK(label_of(p, lora, "waiting_lora_adapters").empty());
  CHECK(only_sample(p, "vllm:gpu_prefix_cache_hit_rate").value == -1.0);

  // Multiprocess order: _sum comes before the buckets; the excerpt ends mid-histogram.
  const Sample& sum = only_sample(p, "vllm:iteration_tokens_total_sum");
  const auto buckets = samples_named(p, "vllm:iteration_tokens_total_bucket");
  REQUIRE(buckets.size() == 15);
  CHECK(sum.line < buckets[0]->line);
  CHECK(sum.value == 1103.0);
  CHECK(samples_named(p, "vllm:iteration_tokens_total_count").empty());
}

TEST_CASE("SGLang and Triton TensorRT-LLM pages") {
  {
    const std::string text = read_fixture("sglang-metrics.txt");
    const ParsedMetrics p = parse(text);
    CHECK(p.errors.empty());
    CHECK(p.samples.size() == 91);
    CHECK(only_sample(p, "sglang:num_queue_reqs").value == 2826.0);
    CHECK(only_sample(p, "sglang:token_usage").value == 0.28);
    const auto buckets = samples_named(p, "sglang:func_latency_seconds_bucket");
    REQUIRE(buckets.size() == 19);
    CHECK(label_of(p, *buckets[1], "le") == "0.07500000000000001");
    CHECK(label_of(p, *buckets[1], "name") == "generate_request");
  }
  {
    const std::string text = read_fixture("trtllm-triton-metrics-readme-sample.txt");
    const ParsedMetrics p = parse(text);
    CHECK(p.errors.empty());
    CHECK(p.samples.size() == 20);
    const auto requests = samples_named(p, "nv_trt_llm_request_metrics");
    REQUIRE(requests.size() == 5);
    CHECK(label_of(p, *requests[3], "request_type") == "max");
    CHECK(requests[3]->value == 512);  // integers without ".0", as Triton prints them
  }
}

TEST_CASE("every capture parses without errors but the one known-bad line") {
  for (const std::string_view name : testing::kCaptureNames) {
    CAPTURE(name);
    const std::string text = read_fixture(name);
    const ParsedMetrics p = parse(text);
    CHECK(p.error_count == (name == "prometheus-text-format-example.txt" ? 1u : 0u));
    for (const Sample& s : p.samples) {
      CHECK_FALSE(s.name.empty());
      CHECK(s.line >= 1);
    }
  }
}

TEST_CASE("CRLF line endings give the same samples") {
  for (const std::string_view name : testing::kCaptureNames) {
    CAPTURE(name);
    const std::string lf = read_fixture(name);
    std::string crlf;
    for (const char c : lf) {
      if (c == '\n') crlf.push_back('\r');
      crlf.push_back(c);
    }
    const ParsedMetrics a = parse(lf);
    const ParsedMetrics b = parse(crlf);
    REQUIRE(a.samples.size() == b.samples.size());
    CHECK(a.error_count == b.error_count);
    for (size_t i = 0; i < a.samples.size(); ++i) {
      CHECK(a.samples[i].name == b.samples[i].name);
      CHECK(a.samples[i].line == b.samples[i].line);
      REQUIRE(a.samples[i].label_count == b.samples[i].label_count);
      const auto la = a.labels_of(a.samples[i]);
      const auto lb = b.labels_of(b.samples[i]);
      for (size_t j = 0; j < la.size(); ++j) CHECK(la[j].value == lb[j].value);
      if (!std::isnan(a.samples[i].value)) CHECK(a.samples[i].value == b.samples[i].value);
    }
  }
}

TEST_CASE("values") {
  const auto value = [](std::string_view token) {
    double v = 0;
    REQUIRE_MESSAGE(parse_prometheus_value(token, v), token);
    return v;
  };
  const auto bad = [](std::string_view token) {
    double v = 0;
    return !parse_prometheus_value(token, v);
  };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  CHECK(value("1") == 1);
  CHECK(value("-1.5e-3") == -1.5e-3);
  CHECK(value("+2") == 2);
  CHECK(value(".5") == 0.5);
  CHECK(value("5.") == 5);
  CHECK(value("1E+3") == 1000);
  CHECK(value("3.9024848896e+010") == 39024848896.0);
  CHECK(value("+Inf") == kInf);
  CHECK(value("-Inf") == -kInf);
  CHECK(value("inf") == kInf);
  CHECK(value("Infinity") == kInf);
  CHECK(std::isnan(value("NaN")));
  CHECK(std::isnan(value("nan")));
  CHECK(bad(""));
  CHECK(bad("+"));
  CHECK(bad("abc"));
  CHECK(bad("1e"));
  CHECK(bad("1.2.3"));
  CHECK(bad("0x10"));
  CHECK(bad("+-1"));
  CHECK(bad("--1"));
  CHECK(bad("nan(1)"));
  CHECK(bad("infinit"));
  CHECK(bad("1,5"));
  CHECK(bad("1e400"));  // out of range
}

struct LineCase {
  std::string_view text;
  std::string_view error;  // empty: the line must parse as one sample
};

TEST_CASE("one line at a time: accepted and rejected forms") {
  const LineCase cases[] = {
      {"a 1", ""},
      {"a{} 1", ""},
      {"a{b=\"c\",} 1", ""},
      {"a {b=\"c\"} 1", ""},
      {"a{ b = \"c\" , d=\"e\" } 1", ""},
      {"a{b=\"c\"}1", ""},
      {"\t a\t1\t", ""},
      {"a:b_c:d 1", ""},
      {"_a 1", ""},
      {"a{__name__=\"x\"} 1", ""},
      {"a{b=\"\xc3\xa9t\xc3\xa9\"} 1", ""},
      {"a{b=\"}{,=\"} 1", ""},
      {"a{b=\"\\x\"} 1", ""},  // unknown escapes are kept as written
      {"a 1 # exemplar-like trailing comment", ""},
      {"a_bucket{le=\"1\"} 3 # {trace_id=\"x\"} 0.5 1.6e9", ""},
      {"a 1 123 # {x=\"y\"} 1", ""},
      {"{\"my.dotted.metric\", \"error.message\"=\"Not Found\"} 1", ""},
      {"{\"a\"} 1", ""},
      {"a{\"b.c\"=\"d\"} 1", ""},
      {"a", "missing value"},
      {"a ", "missing value"},
      {"a{b=\"c\"}", "missing value"},
      {"a abc", "invalid value"},
      {"a 1 2 3", "unexpected text after the sample"},
      {"a 1 1.5", "invalid timestamp"},
      {"a 1 99999999999999999999", "invalid timestamp"},
      {"a 1 +-5", "invalid timestamp"},
      {"a{b=\"c} 1", "unterminated quoted string"},
      {"a{b=\"c\\", "unterminated quoted string"},
      {"a{b=\"c\",b=\"d\"} 1", "duplicate label name"},
      {"a{1b=\"c\"} 1", "invalid label name"},
      {"a{b:c=\"d\"} 1", "expected '=' after the label name"},
      {"a{b} 1", "expected '=' after the label name"},
      {"a{b=c} 1", "expected '\"' to open the label value"},
      {"a{b=\"c\" d=\"e\"} 1", "expected ',' or '}' after a label"},
      {"a{b=\"c\"", "unterminated label set"},
      {"a{b=\"c\",", "unterminated label set"},
      {"a{,} 1", "invalid label name"},
      {"1a 1", "expected a metric name"},
      {"a-b 1", "invalid character in metric name"},
      {"{} 1", "expected a metric name"},
      {"{b=\"c\"} 1", "expected a metric name"},
      {"a{\"b\"} 1", "expected '=' after the label name"},
      {"{\"\"} 1", "empty metric name"},
  };
  for (const LineCase& c : cases) {
    CAPTURE(c.text);
    const ParsedMetrics p = parse(c.text);
    if (c.error.empty()) {
      CHECK(p.errors.empty());
      CHECK(p.samples.size() == 1);
    } else {
      CHECK(p.samples.empty());
      REQUIRE(p.errors.size() == 1);
      CHECK(p.errors[0].reason == c.error);
      CHECK(p.errors[0].line == 1);
      CHECK(p.labels.empty());  // a rejected line leaves no labels behind
    }
  }
}

TEST_CASE("label details") {
  const ParsedMetrics p = parse("{\"my.metric\", \"a.b\"=\"c\", d=\"\\\\\\n\\\"\"} 7 -12\n");
  REQUIRE(p.samples.size() == 1);
  const Sample& s = p.samples[0];
  CHECK(s.name == "my.metric");
  CHECK(s.value == 7);
  CHECK(s.timestamp_ms == -12);
  REQUIRE(s.label_count == 2);
  CHECK(p.labels_of(s)[0].name == "a.b");
  CHECK(p.labels_of(s)[1].name == "d");
  CHECK(p.labels_of(s)[1].value == "\\\n\"");
  CHECK(p.label(s, "a.b") == std::string_view("c"));
  CHECK_FALSE(p.label(s, "missing").has_value());
  // Values without escapes are views into the input; only escaped ones are copied.
  CHECK(p.unescaped.size() == 1);
}

TEST_CASE("unknown escapes stay as written (OpenMetrics conformance \"escaping\")") {
  const ParsedMetrics p = parse("a_total{foo=\"b\\\\a\\z\"} 2\na_total{foo=\"\\foo\"} 1\n");
  REQUIRE(p.samples.size() == 2);
  CHECK(p.label(p.samples[0], "foo") == std::string_view("b\\a\\z"));
  CHECK(p.label(p.samples[1], "foo") == std::string_view("\\foo"));
}

TEST_CASE("timestamps: integer ms in 0.0.4, seconds in OpenMetrics") {
  CHECK(parse("a 1 1395066363000").samples.at(0).timestamp_ms == 1395066363000);
  CHECK(parse("a 1 +5").samples.at(0).timestamp_ms == 5);
  CHECK(parse("a 1 -3982045").samples.at(0).timestamp_ms == -3982045);
  const ParseOptions om{.openmetrics = true};
  CHECK(parse("a 1 1520879607.789", om).samples.at(0).timestamp_ms == 1520879607789);
  CHECK(parse("a 1 1520879607", om).samples.at(0).timestamp_ms == 1520879607000);
  CHECK(parse("a 1 -1.5", om).samples.at(0).timestamp_ms == -1500);
  CHECK(parse("a 1 NaN", om).errors.at(0).reason == "invalid timestamp");
  // Beyond int64 milliseconds the timestamp saturates rather than losing the sample.
  CHECK(parse("a 1 12345678901234567890.1234567890", om).samples.at(0).timestamp_ms ==
        9'200'000'000'000'000'000);
  CHECK(parse("a 1 -1e300", om).samples.at(0).timestamp_ms == -9'200'000'000'000'000'000);
  CHECK_FALSE(parse("a 1").samples.at(0).has_timestamp);
}

TEST_CASE("comments and metadata") {
  const ParsedMetrics p = parse(
      "# just a comment\n"
      "#\n"
      "# HELPER is not a keyword\n"
      "#HELP a no space after the hash\n"
      "# HELP a\n"
      "# HELP b text with \\n escape and  two spaces\n"
      "# TYPE a gauge\n"
      "# TYPE b bogus\n"
      "# TYPE b\n"
      "# TYPE b counter extra\n"
      "# HELP\n"
      "# UNIT c seconds\n"
      "# TYPE \"d.e\" info\n"
      "# TYPE f-g gauge\n"
      "   # indented comment\n");
  REQUIRE(p.metadata.size() == 6);
  CHECK(p.metadata[0].text == "no space after the hash");
  CHECK(p.metadata[1].name == "a");
  CHECK(p.metadata[1].text.empty());
  CHECK(p.metadata[2].text == "text with \\n escape and  two spaces");
  CHECK(p.metadata[3].type == MetricType::kGauge);
  CHECK(p.metadata[4].kind == Metadata::Kind::kUnit);
  CHECK(p.metadata[5].name == "d.e");
  CHECK(p.metadata[5].type == MetricType::kInfo);
  REQUIRE(p.errors.size() == 5);
  CHECK(p.errors[0].line == 8);
  CHECK(p.errors[0].reason == "unknown metric type");
  CHECK(p.errors[0].column == 10);
  CHECK(p.errors[1].line == 9);
  CHECK(p.errors[1].reason == "unknown metric type");
  CHECK(p.errors[2].line == 10);
  CHECK(p.errors[2].reason == "unexpected text after the type in # TYPE");
  CHECK(p.errors[3].line == 11);
  CHECK(p.errors[3].reason == "expected a metric name after # HELP/TYPE/UNIT");
  CHECK(p.errors[4].line == 14);
  CHECK(p.errors[4].reason == "invalid character in metric name");
}

TEST_CASE("# EOF ends the exposition") {
  SUBCASE("a final line feed is fine") {
    const ParsedMetrics p = parse("a 1\n# EOF\n");
    CHECK(p.saw_eof);
    CHECK(p.errors.empty());
    CHECK(p.samples.size() == 1);
  }
  SUBCASE("content after it is reported once and not parsed") {
    const ParsedMetrics p = parse("a 1\n# EOF\n\n  b 2\nc 3\n");
    CHECK(p.saw_eof);
    CHECK(p.samples.size() == 1);
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].reason == "content after # EOF");
    CHECK(p.errors[0].line == 4);
    CHECK(p.errors[0].column == 3);
  }
  SUBCASE("\"# EOF\" with more text is a comment") {
    const ParsedMetrics p = parse("# EOF is near\na 1\n");
    CHECK_FALSE(p.saw_eof);
    CHECK(p.samples.size() == 1);
  }
}

TEST_CASE("a bad line loses only itself") {
  const ParsedMetrics p = parse(
      "good_one 1\n"
      "bad{ 2\n"
      "\n"
      "good_two{x=\"y\"} 3\n"
      "bad_again NaNa\n"
      "good_three 4");  // no final line feed
  REQUIRE(p.samples.size() == 3);
  CHECK(p.samples[0].name == "good_one");
  CHECK(p.samples[1].name == "good_two");
  CHECK(p.samples[1].line == 4);
  CHECK(p.samples[2].name == "good_three");
  CHECK(p.samples[2].value == 4);
  REQUIRE(p.errors.size() == 2);
  CHECK(p.errors[0].line == 2);
  CHECK(p.errors[1].line == 5);
  CHECK(p.errors[1].reason == "invalid value");
  CHECK(p.errors[1].column == 11);
  // The rejected line's partial labels were rolled back.
  REQUIRE(p.labels.size() == 1);
  CHECK(p.labels[0].name == "x");
}

TEST_CASE("stored errors are bounded, all are counted") {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += "bad line\n";
  ParsedMetrics p = parse(text);
  CHECK(p.errors.size() == 64);
  CHECK(p.error_count == 1000);
  CHECK(p.errors.back().line == 64);
  parse_prometheus_text(text, p, {.max_errors = 3});
  CHECK(p.errors.size() == 3);
  CHECK(p.error_count == 1000);
}

TEST_CASE("a result is reusable and movable") {
  ParsedMetrics p;
  const std::string first = "a{v=\"x\\\\y\"} 1\nb 2\n";
  parse_prometheus_text(first, p);
  REQUIRE(p.samples.size() == 2);
  const std::string second = "# EOF\n";
  parse_prometheus_text(second, p);
  CHECK(p.samples.empty());
  CHECK(p.labels.empty());
  CHECK(p.unescaped.empty());
  CHECK(p.saw_eof);

  parse_prometheus_text(first, p);
  CHECK_FALSE(p.saw_eof);
  ParsedMetrics moved = std::move(p);
  REQUIRE(moved.samples.size() == 2);
  CHECK(moved.label(moved.samples[0], "v") == std::string_view("x\\y"));
}

TEST_CASE("empty and whitespace-only input") {
  for (const std::string_view text : {"", "\n", "\r\n", "   \n\t\n", "\r"}) {
    const ParsedMetrics p = parse(text);
    CHECK(p.samples.empty());
    CHECK(p.errors.empty());
  }
}

}  // namespace
}  // namespace infergate::metrics
