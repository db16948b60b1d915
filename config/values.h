#pragma once
// The scalar syntaxes of the configuration (durations, sizes, addresses, names, timestamps),
// as pure functions over text: no YAML, no locations. The loader adds FILE:LINE:COL and the
// document/field path to the error text these return. Also usable by the CLI and tests.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace infergate::config {

// A parsed value, or the reason it could not be parsed (a lower-case phrase, no location).
template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;

  static Parsed ok(T v) { return Parsed{std::move(v), {}}; }
  static Parsed fail(std::string why) { return Parsed{std::nullopt, std::move(why)}; }
  explicit operator bool() const { return value.has_value(); }
};

// Go-style durations ("250ms", "10s", "1m30s", "1.5s", "2h"; units ns, us, µs, ms, s, m, h)
// or a bare non-negative integer meaning milliseconds ("250"). The result must be a whole
// number of milliseconds. Negative values and garbage are errors.
Parsed<std::chrono::milliseconds> parse_duration(std::string_view text);

// A byte count: a non-negative integer, optionally with a suffix: Ki Mi Gi Ti (powers of 1024,
// an optional trailing "B" is accepted: "16MiB") or k/K M G T (powers of 1000, optional "B").
Parsed<uint64_t> parse_size(std::string_view text);

// "host:port", "[v6]:port", a bare IPv4/IPv6 address or a bare DNS name.
struct HostPort {
  std::string host;              // without brackets
  std::optional<uint16_t> port;  // absent when the text had no port
  bool is_ip = false;            // host is an IPv4 or IPv6 literal
};

struct HostPortRules {
  bool require_port = false;      // listeners and admin: a port must be given
  bool allow_port_zero = false;   // listeners and admin: 0 = any free port (tests)
  bool require_ip = false;        // listeners and admin: a host name is not accepted
  bool allow_empty_host = false;  // ":8080" means 0.0.0.0:8080 (listeners and admin)
};

Parsed<HostPort> parse_host_port(std::string_view text, const HostPortRules& rules);

bool is_ipv4_literal(std::string_view text);
bool is_ipv6_literal(std::string_view text);
// RFC 1123 host name (labels of [A-Za-z0-9-], 1..63 chars, no leading/trailing '-', at most
// 253 chars, one optional trailing dot); an all-numeric dotted name is rejected (bad IPv4).
bool is_dns_name(std::string_view text);

// "host:port", with brackets around an IPv6 host: "[::1]:8000".
std::string join_host_port(std::string_view host, uint16_t port);

// Kubernetes object names: DNS-1123 subdomain (lower case, digits, '-', '.'; at most 253).
bool is_dns_subdomain(std::string_view text);
// Kubernetes namespaces: DNS-1123 label (lower case, digits, '-'; at most 63).
bool is_dns_label(std::string_view text);
// Kubernetes label values: empty, or at most 63 chars of [A-Za-z0-9-_.] starting and ending
// alphanumeric.
bool is_label_value(std::string_view text);

// RFC 3339 timestamp ("2024-05-01T10:00:00Z", fractions and "+02:00" offsets allowed) as
// nanoseconds since the Unix epoch.
std::optional<int64_t> parse_rfc3339(std::string_view text);

// The candidate closest to `word` (case-insensitive edit distance), if it is close enough to
// be a plausible typo; for "did you mean" hints.
std::optional<std::string_view> closest_match(std::string_view word,
                                              std::span<const std::string_view> candidates);

}  // namespace infergate::config
