#pragma once
// Prometheus text exposition parser: format 0.0.4 and OpenMetrics 1.0 (docs/metrics-scraping.md
// has the grammar). Sans-I/O, one pass, no regex, no exceptions on bad input.
//
// Contract: the result holds string_views into the parsed text, so the text must outlive it
// (and must not be modified) while the result is read. A label value or quoted name that
// contains escapes is unescaped into storage owned by the result; everything else is a view.
// A bad line is reported (line, column, reason) and skipped; the lines after it still count.
//
// Reuse one ParsedMetrics per endpoint: parse() clears it but keeps its capacity, so a steady
// scrape loop does not allocate. Not thread-safe; one parse at a time per result.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::metrics {

struct Label {
  std::string_view name;
  std::string_view value;  // unescaped
};

struct Sample {
  std::string_view name;  // full sample name, e.g. "foo_bucket", "foo_sum"
  double value = 0;       // may be NaN or +-Inf
  int64_t timestamp_ms = 0;
  uint32_t first_label = 0;  // index into ParsedMetrics::labels
  uint16_t label_count = 0;
  bool has_timestamp = false;
  uint32_t line = 0;  // 1-based
};

enum class MetricType : uint8_t {
  kUntyped,  // "untyped" (0.0.4) and "unknown" (OpenMetrics)
  kCounter,
  kGauge,
  kHistogram,
  kGaugeHistogram,
  kSummary,
  kInfo,
  kStateSet,
};

// One "# HELP", "# TYPE" or "# UNIT" line. `text` is the raw rest of the line (HELP escapes
// are not processed); for TYPE it is the type token.
struct Metadata {
  enum class Kind : uint8_t { kHelp, kType, kUnit };
  Kind kind = Kind::kHelp;
  MetricType type = MetricType::kUntyped;  // kType only
  std::string_view name;
  std::string_view text;
  uint32_t line = 0;
};

struct ParseError {
  uint32_t line = 0;        // 1-based
  uint32_t column = 0;      // 1-based byte offset in the line
  std::string_view reason;  // static string
};

struct ParseOptions {
  // OpenMetrics timestamps are seconds (a real number); 0.0.4 ones are integer milliseconds.
  // The scraper knows which from the response's Content-Type. Either way they are stored in ms.
  bool openmetrics = false;
  // Errors beyond this many are counted but not stored (bounds memory on garbage input).
  size_t max_errors = 64;
};

struct ParsedMetrics {
  ParsedMetrics() = default;
  // Views may point into `unescaped`: copying would leave them pointing into the original.
  ParsedMetrics(const ParsedMetrics&) = delete;
  ParsedMetrics& operator=(const ParsedMetrics&) = delete;
  ParsedMetrics(ParsedMetrics&&) = default;  // deque elements do not move
  ParsedMetrics& operator=(ParsedMetrics&&) = default;

  std::vector<Sample> samples;  // in input order
  std::vector<Label> labels;    // all samples' labels, each sample's as a contiguous run
  std::vector<Metadata> metadata;
  std::vector<ParseError> errors;     // the first ParseOptions::max_errors
  size_t error_count = 0;             // all of them
  bool saw_eof = false;               // "# EOF" seen (OpenMetrics); nothing after it is parsed
  std::deque<std::string> unescaped;  // owns unescaped values; stable addresses

  std::span<const Label> labels_of(const Sample& sample) const {
    return {labels.data() + sample.first_label, sample.label_count};
  }
  // The value of label `name` on `sample`, if present.
  std::optional<std::string_view> label(const Sample& sample, std::string_view name) const;

  void clear();
};

// Parses `text` into `out` (cleared first). Never throws on bad input; check out.errors.
void parse_prometheus_text(std::string_view text, ParsedMetrics& out,
                           const ParseOptions& options = {});

// Parses one sample value: a decimal float, or NaN / Inf / Infinity with an optional sign,
// case-insensitively. Exposed for tests and the engine mappings.
bool parse_prometheus_value(std::string_view token, double& out);

}  // namespace infergate::metrics
