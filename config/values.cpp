#include "config/values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <vector>

#include <fmt/format.h>

namespace infergate::config {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool is_lower_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z');
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// Parses a run of decimal digits into a uint64_t; false on overflow.
bool parse_u64(std::string_view digits, uint64_t* out) {
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *out);
  return ec == std::errc() && ptr == digits.data() + digits.size();
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

struct DurationUnit {
  std::string_view name;
  uint64_t nanos;
  int pow10;  // largest k with 10^k dividing nanos: how many fraction digits stay exact
};

constexpr std::array<DurationUnit, 8> kDurationUnits = {{
    {"ns", 1, 0},
    {"us", 1'000, 3},
    {"\xC2\xB5s", 1'000, 3},  // U+00B5 micro sign
    {"\xCE\xBCs", 1'000, 3},  // U+03BC greek mu
    {"ms", 1'000'000, 6},
    {"s", 1'000'000'000, 9},
    {"m", 60'000'000'000, 10},
    {"h", 3'600'000'000'000, 11},
}};

constexpr uint64_t kNanosPerMilli = 1'000'000;
// Durations beyond ~292 years do not fit std::chrono::nanoseconds; no timeout needs them.
constexpr uint64_t kMaxDurationNanos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

}  // namespace

Parsed<std::chrono::milliseconds> parse_duration(std::string_view text) {
  using R = Parsed<std::chrono::milliseconds>;
  if (text.empty()) return R::fail("empty duration");
  if (text.front() == '-')
    return R::fail(fmt::format("duration \"{}\" must not be negative", text));
  if (text.find_first_of(" \t\r\n") != std::string_view::npos)
    return R::fail(fmt::format(
        "invalid duration \"{}\" (no spaces; expected e.g. \"250ms\", \"10s\" or \"1m30s\")",
        text));
  std::string_view s = text;
  if (s.front() == '+') s.remove_prefix(1);

  if (all_digits(s)) {  // a bare integer: milliseconds
    uint64_t ms = 0;
    if (!parse_u64(s, &ms) || ms > kMaxDurationNanos / kNanosPerMilli)
      return R::fail(fmt::format("duration \"{}\" is too large", text));
    return R::ok(std::chrono::milliseconds(static_cast<int64_t>(ms)));
  }

  uint64_t total = 0;
  size_t i = 0;
  if (s.empty()) return R::fail(fmt::format("invalid duration \"{}\"", text));
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    std::string_view int_part = s.substr(start, i - start);
    std::string_view frac_part;
    if (i < s.size() && s[i] == '.') {
      size_t fstart = ++i;
      while (i < s.size() && is_digit(s[i])) ++i;
      frac_part = s.substr(fstart, i - fstart);
    }
    if (int_part.empty() && frac_part.empty())
      return R::fail(fmt::format(
          "invalid duration \"{}\" (expected e.g. \"250ms\", \"10s\", \"1m30s\" or an integer "
          "number of milliseconds)",
          text));
    size_t ustart = i;
    while (i < s.size() && !is_digit(s[i]) && s[i] != '.') ++i;
    std::string_view unit_name = s.substr(ustart, i - ustart);
    if (unit_name.empty())
      return R::fail(
          fmt::format("missing unit in duration \"{}\" (units: ns, us, ms, s, m, h)", text));
    const DurationUnit* unit = nullptr;
    for (const auto& u : kDurationUnits)
      if (u.name == unit_name) unit = &u;
    if (unit == nullptr)
      return R::fail(fmt::format(
          "unknown unit \"{}\" in duration \"{}\" (units: ns, us, ms, s, m, h)", unit_name, text));

    uint64_t whole = 0, part = 0;
    if (!int_part.empty() && !parse_u64(int_part, &whole))
      return R::fail(fmt::format("duration \"{}\" is too large", text));
    if (mul_overflows(whole, unit->nanos, &part) || add_overflows(total, part, &total))
      return R::fail(fmt::format("duration \"{}\" is too large", text));

    while (!frac_part.empty() && frac_part.back() == '0') frac_part.remove_suffix(1);
    if (!frac_part.empty()) {
      // Only fractions that are a whole number of nanoseconds can be a whole number of
      // milliseconds; finer ones are rejected below with the same message.
      if (static_cast<int>(frac_part.size()) > unit->pow10)
        return R::fail(fmt::format("duration \"{}\" is not a whole number of milliseconds", text));
      uint64_t frac = 0;
      parse_u64(frac_part, &frac);
      uint64_t scale = unit->nanos;
      for (size_t k = 0; k < frac_part.size(); ++k) scale /= 10;
      if (add_overflows(total, frac * scale, &total))
        return R::fail(fmt::format("duration \"{}\" is too large", text));
    }
  }
  if (total > kMaxDurationNanos) return R::fail(fmt::format("duration \"{}\" is too large", text));
  if (total % kNanosPerMilli != 0)
    return R::fail(fmt::format("duration \"{}\" is not a whole number of milliseconds", text));
  return R::ok(std::chrono::milliseconds(static_cast<int64_t>(total / kNanosPerMilli)));
}

Parsed<uint64_t> parse_size(std::string_view text) {
  using R = Parsed<uint64_t>;
  if (text.empty()) return R::fail("empty size");
  if (text.front() == '-') return R::fail(fmt::format("size \"{}\" must not be negative", text));
  size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  std::string_view digits = text.substr(0, i);
  std::string_view suffix = text.substr(i);
  if (digits.empty())
    return R::fail(fmt::format(
        "invalid size \"{}\" (expected bytes as an integer, or e.g. \"64Ki\", \"16Mi\", \"1Gi\")",
        text));
  struct Suffix {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr std::array<Suffix, 17> kSuffixes = {{
      {"", 1},
      {"Ki", 1ull << 10},
      {"KiB", 1ull << 10},
      {"Mi", 1ull << 20},
      {"MiB", 1ull << 20},
      {"Gi", 1ull << 30},
      {"GiB", 1ull << 30},
      {"Ti", 1ull << 40},
      {"TiB", 1ull << 40},
      {"k", 1'000},
      {"K", 1'000},
      {"KB", 1'000},
      {"kB", 1'000},
      {"M", 1'000'000},
      {"MB", 1'000'000},
      {"G", 1'000'000'000},
      {"GB", 1'000'000'000},
  }};
  const Suffix* found = nullptr;
  for (const auto& s : kSuffixes)
    if (s.name == suffix) found = &s;
  if (found == nullptr)
    return R::fail(
        fmt::format("invalid size \"{}\" (unknown suffix \"{}\"; use Ki, Mi, Gi, Ti or k, M, G)",
                    text, suffix));
  uint64_t n = 0, bytes = 0;
  if (!parse_u64(digits, &n) || mul_overflows(n, found->factor, &bytes))
    return R::fail(fmt::format("size \"{}\" is too large", text));
  return R::ok(bytes);
}

bool is_ipv4_literal(std::string_view text) {
  if (text.empty() || text.size() > 15) return false;
  std::string s(text);
  in_addr addr{};
  return inet_pton(AF_INET, s.c_str(), &addr) == 1;
}

bool is_ipv6_literal(std::string_view text) {
  if (text.empty() || text.size() > 45) return false;
  std::string s(text);
  in6_addr addr{};
  return inet_pton(AF_INET6, s.c_str(), &addr) == 1;
}

bool is_dns_name(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty() || text.size() > 253) return false;
  bool all_numeric = true;
  size_t start = 0;
  while (start <= text.size()) {
    size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) dot = text.size();
    std::string_view label = text.substr(start, dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_alnum(c) && c != '-') return false;
      if (!is_digit(c)) all_numeric = false;
    }
    start = dot + 1;
  }
  return !all_numeric;
}

std::string join_host_port(std::string_view host, uint16_t port) {
  if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Parsed<HostPort> parse_host_port(std::string_view text, const HostPortRules& rules) {
  using R = Parsed<HostPort>;
  if (text.empty()) return R::fail("empty address");
  HostPort out;
  std::string_view host;
  std::optional<std::string_view> port_text;

  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos)
      return R::fail(fmt::format("invalid address \"{}\": missing ']'", text));
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return R::fail(fmt::format("invalid address \"{}\": expected ':' after ']'", text));
      port_text = rest.substr(1);
    }
    if (!is_ipv6_literal(host))
      return R::fail(
          fmt::format("invalid address \"{}\": \"{}\" is not an IPv6 address", text, host));
  } else {
    size_t colons = static_cast<size_t>(std::count(text.begin(), text.end(), ':'));
    if (colons == 0) {
      host = text;
    } else if (colons == 1) {
      size_t c = text.find(':');
      host = text.substr(0, c);
      port_text = text.substr(c + 1);
    } else {
      if (!is_ipv6_literal(text)) return R::fail(fmt::format("invalid address \"{}\"", text));
      if (rules.require_port)
        return R::fail(fmt::format(
            "invalid address \"{}\": an IPv6 address with a port is written [address]:port", text));
      host = text;
    }
  }

  if (port_text) {
    uint64_t port = 0;
    if (!all_digits(*port_text) || port_text->size() > 5 || !parse_u64(*port_text, &port) ||
        port > 65535)
      return R::fail(fmt::format("invalid port \"{}\" in \"{}\" (expected {}..65535)", *port_text,
                                 text, rules.allow_port_zero ? 0 : 1));
    if (port == 0 && !rules.allow_port_zero)
      return R::fail(fmt::format("invalid port 0 in \"{}\" (expected 1..65535)", text));
    out.port = static_cast<uint16_t>(port);
  } else if (rules.require_port) {
    return R::fail(fmt::format("address \"{}\" has no port (expected host:port)", text));
  }

  if (host.empty()) {
    if (!rules.allow_empty_host) return R::fail(fmt::format("address \"{}\" has no host", text));
    host = "0.0.0.0";
  }
  if (is_ipv4_literal(host) || is_ipv6_literal(host)) {
    out.is_ip = true;
  } else if (rules.require_ip) {
    return R::fail(fmt::format(
        "invalid address \"{}\": the host must be an IP address such as 0.0.0.0, :: or 127.0.0.1{}",
        text, host == "localhost" ? " (write 127.0.0.1 instead of localhost)" : ""));
  } else if (!is_dns_name(host)) {
    return R::fail(fmt::format(
        "invalid address \"{}\": \"{}\" is neither an IP address nor a DNS name", text, host));
  }
  out.host = std::string(host);
  return R::ok(std::move(out));
}

bool is_dns_subdomain(std::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) dot = text.size();
    std::string_view label = text.substr(start, dot - start);
    if (label.empty() || !is_lower_alnum(label.front()) || !is_lower_alnum(label.back()))
      return false;
    for (char c : label)
      if (!is_lower_alnum(c) && c != '-') return false;
    start = dot + 1;
  }
  return true;
}

bool is_dns_label(std::string_view text) {
  return text.size() <= 63 && text.find('.') == std::string_view::npos && is_dns_subdomain(text);
}

bool is_label_value(std::string_view text) {
  if (text.empty()) return true;
  if (text.size() > 63 || !is_alnum(text.front()) || !is_alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool fixed_digits(std::string_view s, size_t pos, size_t n, unsigned* out) {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!is_digit(s[i])) return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::optional<int64_t> parse_rfc3339(std::string_view s) {
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!fixed_digits(s, 0, 4, &year) || s.size() < 20 || s[4] != '-' ||
      !fixed_digits(s, 5, 2, &month) || s[7] != '-' || !fixed_digits(s, 8, 2, &day) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !fixed_digits(s, 11, 2, &hour) ||
      s[13] != ':' || !fixed_digits(s, 14, 2, &minute) || s[16] != ':' ||
      !fixed_digits(s, 17, 2, &second))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  size_t i = 19;
  int64_t nanos = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t start = i;
    int64_t scale = 100'000'000;
    while (i < s.size() && is_digit(s[i])) {
      nanos += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start) return std::nullopt;
  }
  int64_t offset_minutes = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    unsigned oh = 0, om = 0;
    if (!fixed_digits(s, i + 1, 2, &oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !fixed_digits(s, i + 4, 2, &om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_minutes = (s[i] == '+' ? 1 : -1) * static_cast<int64_t>(oh * 60 + om);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  int64_t secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
                 offset_minutes * 60;
  return secs * 1'000'000'000 + nanos;
}

std::optional<std::string_view> closest_match(std::string_view word,
                                              std::span<const std::string_view> candidates) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string w = lower(word);
  std::optional<std::string_view> best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (std::string_view candidate : candidates) {
    const std::string c = lower(candidate);
    // Levenshtein distance, two rows.
    std::vector<size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= w.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        size_t cost = w[i - 1] == c[j - 1] ? 0 : 1;
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      }
      std::swap(prev, cur);
    }
    size_t d = prev[c.size()];
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  const size_t limit = std::clamp<size_t>(std::max(word.size(), size_t{1}) / 3, 1, 3);
  if (best && best_distance <= limit) return best;
  return std::nullopt;
}

}  // namespace infergate::config
