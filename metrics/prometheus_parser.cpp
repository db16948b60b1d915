#include "metrics/prometheus_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace infergate::metrics {
namespace {

constexpr bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
constexpr bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_metric_name_start(char c) {
  return is_alpha(c) || c == '_' || c == ':';
}
constexpr bool is_metric_name_char(char c) {
  return is_metric_name_start(c) || is_digit(c);
}
constexpr bool is_label_name_start(char c) {
  return is_alpha(c) || c == '_';
}
constexpr bool is_label_name_char(char c) {
  return is_label_name_start(c) || is_digit(c);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

// Why a line failed: a static reason and the byte offset in the line where it was noticed.
struct Failure {
  std::string_view reason;
  size_t at = 0;
};

// Parses one line at a time. Holds no state across lines besides the output.
class LineParser {
 public:
  LineParser(ParsedMetrics& out, const ParseOptions& options) : out_(out), options_(options) {}

  // Returns false once "# EOF" has been seen.
  bool parse_line(std::string_view line, uint32_t line_no) {
    line_ = line;
    line_no_ = line_no;
    pos_ = 0;
    skip_blanks();
    if (pos_ == line_.size()) return true;  // blank line
    const size_t labels_before = out_.labels.size();
    std::optional<Failure> failure = line_[pos_] == '#' ? comment() : sample();
    if (failure) {
      out_.labels.resize(labels_before);
      report(failure->reason, failure->at);
    }
    return !out_.saw_eof;
  }

  void report(std::string_view reason, size_t at) { report_at(line_no_, at, reason); }
  void report_at(uint32_t line_no, size_t at, std::string_view reason) {
    ++out_.error_count;
    if (out_.errors.size() < options_.max_errors) {
      out_.errors.push_back({line_no, static_cast<uint32_t>(at + 1), reason});
    }
  }

 private:
  using Result = std::optional<Failure>;

  void skip_blanks() {
    while (pos_ < line_.size() && is_blank(line_[pos_])) ++pos_;
  }
  bool at_end() const { return pos_ == line_.size(); }
  char peek() const { return line_[pos_]; }
  Failure fail(std::string_view reason) const { return {reason, pos_}; }

  std::string_view read_token() {
    const size_t start = pos_;
    while (pos_ < line_.size() && !is_blank(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }

  std::string_view read_metric_name() {
    const size_t start = pos_;
    if (pos_ < line_.size() && is_metric_name_start(line_[pos_])) {
      ++pos_;
      while (pos_ < line_.size() && is_metric_name_char(line_[pos_])) ++pos_;
    }
    return line_.substr(start, pos_ - start);
  }

  std::string_view read_label_name() {
    const size_t start = pos_;
    if (pos_ < line_.size() && is_label_name_start(line_[pos_])) {
      ++pos_;
      while (pos_ < line_.size() && is_label_name_char(line_[pos_])) ++pos_;
    }
    return line_.substr(start, pos_ - start);
  }

  // At an opening quote: reads up to the closing one, unescaping \\, \" and \n. The result is
  // a view into the line unless there were escapes.
  Result read_quoted(std::string_view& value) {
    ++pos_;  // opening quote
    const size_t start = pos_;
    while (pos_ < line_.size() && line_[pos_] != '"' && line_[pos_] != '\\') ++pos_;
    if (pos_ == line_.size()) return Failure{"unterminated quoted string", start - 1};
    if (line_[pos_] == '"') {
      value = line_.substr(start, pos_ - start);
      ++pos_;
      return std::nullopt;
    }
    std::string unescaped(line_.substr(start, pos_ - start));
    while (pos_ < line_.size()) {
      const char c = line_[pos_];
      if (c == '"') {
        ++pos_;
        value = out_.unescaped.emplace_back(std::move(unescaped));
        return std::nullopt;
      }
      if (c == '\\') {
        if (pos_ + 1 == line_.size()) break;
        const char e = line_[pos_ + 1];
        if (e == '\\' || e == '"') {
          unescaped.push_back(e);
        } else if (e == 'n') {
          unescaped.push_back('\n');
        } else {
          // Unknown escapes stay as written, as Prometheus' own scraper and the OpenMetrics
          // conformance suite ("escaping", "label_escaping") have it.
          unescaped.push_back('\\');
          unescaped.push_back(e);
        }
        pos_ += 2;
      } else {
        unescaped.push_back(c);
        ++pos_;
      }
    }
    return Failure{"unterminated quoted string", start - 1};
  }

  // "# HELP name text", "# TYPE name type", "# UNIT name unit", "# EOF", or any other comment.
  Result comment() {
    ++pos_;  // '#'
    skip_blanks();
    const std::string_view keyword = read_token();
    Metadata::Kind kind;
    if (keyword == "HELP") {
      kind = Metadata::Kind::kHelp;
    } else if (keyword == "TYPE") {
      kind = Metadata::Kind::kType;
    } else if (keyword == "UNIT") {
      kind = Metadata::Kind::kUnit;
    } else if (keyword == "EOF") {
      skip_blanks();
      if (!at_end()) return std::nullopt;  // "# EOF and more" is a plain comment
      out_.saw_eof = true;
      return std::nullopt;
    } else {
      return std::nullopt;  // plain comment
    }
    skip_blanks();
    std::string_view name;
    if (!at_end() && peek() == '"') {
      if (Result r = read_quoted(name)) return r;
    } else {
      name = read_metric_name();
    }
    if (name.empty()) return fail("expected a metric name after # HELP/TYPE/UNIT");
    if (!at_end() && !is_blank(peek())) return fail("invalid character in metric name");
    Metadata meta;
    meta.kind = kind;
    meta.name = name;
    meta.line = line_no_;
    if (kind == Metadata::Kind::kType) {
      skip_blanks();
      const size_t type_at = pos_;
      meta.text = read_token();
      skip_blanks();
      if (!at_end()) return fail("unexpected text after the type in # TYPE");
      if (!parse_type(meta.text, meta.type)) return Failure{"unknown metric type", type_at};
    } else {
      skip_blanks();
      meta.text = line_.substr(pos_);
    }
    out_.metadata.push_back(meta);
    return std::nullopt;
  }

  static bool parse_type(std::string_view token, MetricType& type) {
    static constexpr struct {
      std::string_view name;
      MetricType type;
    } kTypes[] = {
        {"counter", MetricType::kCounter},     {"gauge", MetricType::kGauge},
        {"histogram", MetricType::kHistogram}, {"gaugehistogram", MetricType::kGaugeHistogram},
        {"summary", MetricType::kSummary},     {"untyped", MetricType::kUntyped},
        {"unknown", MetricType::kUntyped},     {"info", MetricType::kInfo},
        {"stateset", MetricType::kStateSet},
    };
    for (const auto& t : kTypes) {
      if (token == t.name) {
        type = t.type;
        return true;
      }
    }
    return false;
  }

  // name[{labels}] value [timestamp] [# exemplar]
  Result sample() {
    Sample s;
    s.line = line_no_;
    s.first_label = static_cast<uint32_t>(out_.labels.size());
    if (peek() != '{') {
      s.name = read_metric_name();
      if (s.name.empty()) return fail("expected a metric name");
      if (!at_end() && !is_blank(peek()) && peek() != '{') {
        return fail("invalid character in metric name");
      }
      skip_blanks();
    }
    if (!at_end() && peek() == '{') {
      if (Result r = label_set(s.name, s.first_label)) return r;
      if (s.name.empty()) return fail("expected a metric name");
    }
    const size_t labels = out_.labels.size() - s.first_label;
    if (labels > std::numeric_limits<uint16_t>::max()) return fail("too many labels");
    s.label_count = static_cast<uint16_t>(labels);

    skip_blanks();
    if (at_end()) return fail("missing value");
    const size_t value_at = pos_;
    const std::string_view value = read_token();
    if (!parse_prometheus_value(value, s.value)) return Failure{"invalid value", value_at};

    skip_blanks();
    if (!at_end() && peek() != '#') {
      const size_t ts_at = pos_;
      const std::string_view ts = read_token();
      if (!parse_timestamp(ts, s.timestamp_ms)) return Failure{"invalid timestamp", ts_at};
      s.has_timestamp = true;
      skip_blanks();
    }
    // An OpenMetrics exemplar ("# {trace_id=...} 1.0") is tolerated and ignored.
    if (!at_end() && peek() != '#') return fail("unexpected text after the sample");
    out_.samples.push_back(s);
    return std::nullopt;
  }

  // At '{': label="value" pairs separated by commas, optional trailing comma, blanks allowed
  // between tokens. With the UTF-8 syntax the metric name may be a lone quoted string inside
  // the braces ({"my.metric", "a.b"="c"}); `name` is set from it when it was empty.
  Result label_set(std::string_view& name, size_t first_label) {
    ++pos_;  // '{'
    skip_blanks();
    if (!at_end() && peek() == '}') {
      ++pos_;
      return std::nullopt;
    }
    for (;;) {
      if (at_end()) return fail("unterminated label set");
      const size_t item_at = pos_;
      const bool quoted = peek() == '"';
      std::string_view label_name;
      if (quoted) {
        if (Result r = read_quoted(label_name)) return r;
      } else {
        label_name = read_label_name();
        if (label_name.empty()) return fail("invalid label name");
      }
      skip_blanks();
      if (quoted && (at_end() || peek() != '=')) {
        if (!name.empty()) return fail("expected '=' after the label name");
        if (label_name.empty()) return Failure{"empty metric name", item_at};
        name = label_name;
      } else {
        if (at_end() || peek() != '=') return fail("expected '=' after the label name");
        ++pos_;
        skip_blanks();
        if (at_end() || peek() != '"') return fail("expected '\"' to open the label value");
        std::string_view value;
        if (Result r = read_quoted(value)) return r;
        for (size_t i = first_label; i < out_.labels.size(); ++i) {
          if (out_.labels[i].name == label_name) return Failure{"duplicate label name", item_at};
        }
        out_.labels.push_back({label_name, value});
        skip_blanks();
      }
      if (at_end()) return fail("unterminated label set");
      if (peek() == '}') {
        ++pos_;
        return std::nullopt;
      }
      if (peek() != ',') return fail("expected ',' or '}' after a label");
      ++pos_;
      skip_blanks();
      if (!at_end() && peek() == '}') {
        ++pos_;
        return std::nullopt;
      }
    }
  }

  bool parse_timestamp(std::string_view token, int64_t& ms) const {
    if (options_.openmetrics) {
      double seconds = 0;
      if (!parse_prometheus_value(token, seconds) || !std::isfinite(seconds)) return false;
      // Saturates beyond +-9.2e18 ms (292 million years), which the conformance suite's
      // "timestamps" case reaches; both bounds are exact doubles, so the cast is defined.
      ms = static_cast<int64_t>(std::clamp(std::round(seconds * 1000.0), -9.2e18, 9.2e18));
      return true;
    }
    const char* begin = token.data();
    const char* end = begin + token.size();
    if (begin != end && *begin == '+') {
      ++begin;  // from_chars takes '-' but not '+'
      if (begin != end && *begin == '-') return false;
    }
    if (begin == end) return false;
    const auto [ptr, ec] = std::from_chars(begin, end, ms);
    return ec == std::errc() && ptr == end;
  }

  ParsedMetrics& out_;
  const ParseOptions& options_;
  std::string_view line_;
  uint32_t line_no_ = 0;
  size_t pos_ = 0;
};

}  // namespace

bool parse_prometheus_value(std::string_view token, double& out) {
  const char* begin = token.data();
  const char* end = begin + token.size();
  bool negative = false;
  if (begin != end && (*begin == '+' || *begin == '-')) {
    negative = *begin == '-';
    ++begin;
  }
  if (begin == end) return false;
  const std::string_view rest(begin, static_cast<size_t>(end - begin));
  if (iequals(rest, "inf") || iequals(rest, "infinity")) {
    out = negative ? -std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::infinity();
    return true;
  }
  if (iequals(rest, "nan")) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  // Only digits and '.' may start a number here: this keeps from_chars away from its own
  // "-", "inf" and "nan(...)" forms.
  if (!is_digit(*begin) && *begin != '.') return false;
  double v = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, v, std::chars_format::general);
  if (ec != std::errc() || ptr != end) return false;
  out = negative ? -v : v;
  return true;
}

std::optional<std::string_view> ParsedMetrics::label(const Sample& sample,
                                                     std::string_view name) const {
  for (const Label& l : labels_of(sample)) {
    if (l.name == name) return l.value;
  }
  return std::nullopt;
}

void ParsedMetrics::clear() {
  samples.clear();
  labels.clear();
  metadata.clear();
  errors.clear();
  error_count = 0;
  saw_eof = false;
  unescaped.clear();
}

void parse_prometheus_text(std::string_view text, ParsedMetrics& out, const ParseOptions& options) {
  out.clear();
  LineParser parser(out, options);
  const char* const data = text.data();
  const size_t size = text.size();
  size_t pos = 0;
  uint32_t line_no = 0;
  while (pos < size) {
    const void* nl = std::memchr(data + pos, '\n', size - pos);
    const size_t line_end = nl ? static_cast<size_t>(static_cast<const char*>(nl) - data) : size;
    size_t content_end = line_end;
    if (content_end > pos && data[content_end - 1] == '\r') --content_end;  // CRLF
    ++line_no;
    if (!parser.parse_line(text.substr(pos, content_end - pos), line_no)) {
      // "# EOF": OpenMetrics allows nothing after it but a final line feed. Report the first
      // line with content and ignore the rest.
      size_t line_start = line_end + 1;
      for (size_t p = line_start; p < size; ++p) {
        if (data[p] == '\n') {
          ++line_no;
          line_start = p + 1;
        } else if (data[p] != '\r' && !is_blank(data[p])) {
          parser.report_at(line_no + 1, p - line_start, "content after # EOF");
          break;
        }
      }
      return;
    }
    pos = line_end + 1;
  }
}

}  // namespace infergate::metrics
