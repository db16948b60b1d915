// Deterministic stand-in for the libFuzzer target (tests/fuzz/prometheus_fuzz.cpp): seeded
// random mutations of the captures through the parser and every engine mapping. Run under the
// asan preset this is what catches out-of-bounds reads and UB; here it also checks the
// parser's output invariants.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/engine_mapping.h"
#include "metrics/prometheus_parser.h"
#include "metrics_test_util.h"

namespace infergate::metrics {
namespace {

constexpr int kIterations = 50'000;
constexpr uint64_t kSeed = 0x1f2e3d4c5b6a7988;

// Bytes and tokens that matter to the grammar, so mutations reach the interesting branches.
constexpr std::string_view kTokens[] = {
    "{",
    "}",
    "\"",
    "\\",
    ",",
    "=",
    "#",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\\n",
    "\\\"",
    "\\\\",
    "# EOF\n",
    "# HELP ",
    "# TYPE ",
    "# UNIT ",
    " gauge",
    "NaN",
    "+Inf",
    "-Inf",
    "1e308",
    "-1",
    "1.5",
    "0",
    "le=\"+Inf\"",
    "{\"a.b\"}",
    "{\"x\"=\"y\"}",
    "vllm:num_requests_waiting",
    "vllm:lora_requests_info",
    "running_lora_adapters=\"",
    "vllm:cache_config_info",
    "block_size=\"",
    "sglang:token_usage",
    "nv_trt_llm_kv_cache_block_metrics",
    "kv_cache_block_type=\"used\"",
    "trtllm_kv_cache_max_blocks",
    " # {t=\"1\"} 1 2",
    std::string_view("\0", 1),
    "\xff",
    "\xc3\xa9",
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  size_t below(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }

  // A window of whole lines (most iterations) or the whole capture.
  std::string pick_input(const std::vector<std::string>& captures) {
    const std::string& c = captures[below(captures.size())];
    if (below(10) == 0) return c;
    std::vector<size_t> starts{0};
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i] == '\n') starts.push_back(i + 1);
    }
    const size_t first = below(starts.size());
    const size_t count = 1 + below(40);
    const size_t begin = starts[first];
    const size_t end = first + count < starts.size() ? starts[first + count] : c.size();
    return c.substr(begin, end - begin);
  }

  void mutate(std::string& s, const std::vector<std::string>& captures) {
    const size_t n = 1 + below(8);
    for (size_t i = 0; i < n; ++i) {
      const size_t at = below(s.size() + 1);
      switch (below(7)) {
        case 0:  // flip a bit
          if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
          break;
        case 1:  // random byte
          s.insert(at, 1, static_cast<char>(below(256)));
          break;
        case 2: {  // grammar token
          s.insert(at, kTokens[below(std::size(kTokens))]);
          break;
        }
        case 3:  // erase a range
          if (!s.empty()) s.erase(below(s.size()), 1 + below(16));
          break;
        case 4: {  // duplicate a range
          if (s.empty()) break;
          const size_t from = below(s.size());
          const std::string piece = s.substr(from, 1 + below(32));
          s.insert(at, piece);
          break;
        }
        case 5: {  // splice from another capture
          const std::string& other = captures[below(captures.size())];
          const size_t from = below(other.size());
          s.insert(at, other.substr(from, 1 + below(64)));
          break;
        }
        default:  // truncate
          s.resize(below(s.size() + 1));
          break;
      }
    }
  }

 private:
  std::mt19937_64 rng_;
};

bool inside(std::string_view view, std::string_view text, const ParsedMetrics& p) {
  if (view.empty()) return true;
  const auto contains = [&](std::string_view outer) {
    return view.data() >= outer.data() && view.data() + view.size() <= outer.data() + outer.size();
  };
  if (contains(text)) return true;
  for (const std::string& u : p.unescaped) {
    if (contains(u)) return true;
  }
  return false;
}

// False on the first broken invariant (the caller reports the input).
bool check_invariants(std::string_view text, const ParsedMetrics& p) {
  size_t lines = 1;
  for (const char c : text) lines += c == '\n';
  if (p.errors.size() > p.error_count || p.errors.size() > 64) return false;
  for (const ParseError& e : p.errors) {
    if (e.line < 1 || e.line > lines || e.column < 1 || e.reason.empty()) return false;
  }
  size_t next_label = 0;
  for (const Sample& s : p.samples) {
    if (s.name.empty() || !inside(s.name, text, p)) return false;
    if (s.line < 1 || s.line > lines) return false;
    if (s.first_label != next_label) return false;  // contiguous runs in input order
    next_label += s.label_count;
    for (const Label& l : p.labels_of(s)) {
      if (l.name.empty() || !inside(l.name, text, p) || !inside(l.value, text, p)) return false;
    }
  }
  if (next_label != p.labels.size()) return false;
  for (const Metadata& m : p.metadata) {
    if (m.name.empty() || !inside(m.name, text, p) || !inside(m.text, text, p)) return false;
  }
  return true;
}

bool check_mapping(const EngineMetrics& m) {
  return std::isfinite(m.waiting) && m.waiting >= 0 && std::isfinite(m.running) && m.running >= 0 &&
         m.kv_cache_usage >= 0 && m.kv_cache_usage <= 1 && m.max_lora >= 0 &&
         m.engine != EngineType::kAuto &&
         (m.has_lora_info == ((m.missing & engine_field::kLoraInfo) == 0) ||
          m.engine != EngineType::kVllm);
}

TEST_CASE("50,000 seeded mutations of the captures: no crash, invariants hold") {
  std::vector<std::string> captures;
  for (const std::string_view name : testing::kCaptureNames) {
    captures.push_back(testing::read_fixture(name));
  }
  Mutator mutator(kSeed);
  ParsedMetrics parsed;  // reused, as the scraper does
  size_t samples = 0, errors = 0, failures = 0;
  for (int i = 0; i < kIterations && failures < 5; ++i) {
    std::string input = mutator.pick_input(captures);
    mutator.mutate(input, captures);
    const bool openmetrics = (i & 1) != 0;
    parse_prometheus_text(input, parsed, {.openmetrics = openmetrics});
    samples += parsed.samples.size();
    errors += parsed.error_count;
    bool ok = check_invariants(input, parsed);
    for (const EngineType type :
         {EngineType::kAuto, EngineType::kVllm, EngineType::kSglang, EngineType::kTrtllm}) {
      ok = ok && check_mapping(map_engine_metrics(parsed, type));
    }
    if (!ok) {
      ++failures;
      FAIL_CHECK("iteration " << i << " broke an invariant; input:\n" << input);
    }
  }
  CHECK(failures == 0);
  // The mutations must exercise both outcomes, or the test proves little.
  MESSAGE("samples parsed: " << samples << ", errors reported: " << errors);
  CHECK(samples > 100'000);
  CHECK(errors > 10'000);
}

}  // namespace
}  // namespace infergate::metrics
