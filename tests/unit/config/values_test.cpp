// The scalar syntaxes: durations, sizes, addresses, names, timestamps, "did you mean".

#include <doctest/doctest.h>

#include <array>

#include "config/values.h"

using namespace infergate::config;
using std::chrono::milliseconds;

namespace {
milliseconds ms(std::string_view text) {
  auto p = parse_duration(text);
  INFO(text, " -> ", p.error);
  REQUIRE(p);
  return *p.value;
}
std::string duration_error(std::string_view text) {
  auto p = parse_duration(text);
  INFO(text);
  REQUIRE_FALSE(p);
  return p.error;
}
uint64_t bytes(std::string_view text) {
  auto p = parse_size(text);
  INFO(text, " -> ", p.error);
  REQUIRE(p);
  return *p.value;
}
}  // namespace

TEST_CASE("durations: Go syntax and bare milliseconds") {
  CHECK(ms("250ms") == milliseconds(250));
  CHECK(ms("10s") == milliseconds(10'000));
  CHECK(ms("1m30s") == milliseconds(90'000));
  CHECK(ms("1.5s") == milliseconds(1'500));
  CHECK(ms(".5s") == milliseconds(500));
  CHECK(ms("2h") == milliseconds(7'200'000));
  CHECK(ms("1h2m3s4ms") == milliseconds(3'723'004));
  CHECK(ms("0.25m") == milliseconds(15'000));
  CHECK(ms("1000us") == milliseconds(1));
  CHECK(ms("2000000ns") == milliseconds(2));
  CHECK(ms("1000\xC2\xB5s") == milliseconds(1));  // µs
  CHECK(ms("250") == milliseconds(250));          // integer: milliseconds
  CHECK(ms("0") == milliseconds(0));
  CHECK(ms("0s") == milliseconds(0));
  CHECK(ms("+5s") == milliseconds(5'000));
}

TEST_CASE("durations: negatives, garbage and sub-millisecond values are rejected") {
  CHECK(duration_error("-1s").find("must not be negative") != std::string::npos);
  CHECK(duration_error("-250").find("must not be negative") != std::string::npos);
  CHECK(duration_error("").find("empty") != std::string::npos);
  CHECK(duration_error("1.5").find("missing unit") != std::string::npos);
  CHECK(duration_error("10 s").find("no spaces") != std::string::npos);
  CHECK(duration_error("10sec").find("unknown unit \"sec\"") != std::string::npos);
  CHECK(duration_error("s").find("invalid duration") != std::string::npos);
  CHECK(duration_error("abc").find("invalid duration") != std::string::npos);
  CHECK_FALSE(parse_duration("1.2.3s"));
  CHECK(duration_error("500us").find("whole number of milliseconds") != std::string::npos);
  CHECK(duration_error("1.0005s").find("whole number of milliseconds") != std::string::npos);
  CHECK(duration_error("99999999999999999999h").find("too large") != std::string::npos);
  CHECK(duration_error("99999999999h").find("too large") != std::string::npos);
}

TEST_CASE("sizes: integers and binary/decimal suffixes") {
  CHECK(bytes("0") == 0);
  CHECK(bytes("1048576") == 1'048'576);
  CHECK(bytes("64Ki") == 64 * 1024);
  CHECK(bytes("16Mi") == 16ull << 20);
  CHECK(bytes("16MiB") == 16ull << 20);
  CHECK(bytes("1Gi") == 1ull << 30);
  CHECK(bytes("2Ti") == 2ull << 40);
  CHECK(bytes("10k") == 10'000);
  CHECK(bytes("10K") == 10'000);
  CHECK(bytes("5M") == 5'000'000);
  CHECK(bytes("1G") == 1'000'000'000);
  CHECK_FALSE(parse_size("-1"));
  CHECK(parse_size("-1").error.find("must not be negative") != std::string::npos);
  CHECK_FALSE(parse_size("16 Mi"));
  CHECK_FALSE(parse_size("16mi"));
  CHECK_FALSE(parse_size("1.5Mi"));
  CHECK_FALSE(parse_size("Mi"));
  CHECK_FALSE(parse_size(""));
  CHECK(parse_size("99999999999999Ti").error.find("too large") != std::string::npos);
}

TEST_CASE("addresses: host:port, [v6]:port, bare IPs and DNS names") {
  HostPortRules endpoint{};
  auto a = parse_host_port("127.0.0.1:8001", endpoint);
  REQUIRE(a);
  CHECK(a.value->host == "127.0.0.1");
  CHECK(a.value->port == 8001);
  CHECK(a.value->is_ip);

  auto b = parse_host_port("[::1]:9000", endpoint);
  REQUIRE(b);
  CHECK(b.value->host == "::1");
  CHECK(b.value->port == 9000);

  auto c = parse_host_port("10.0.0.12", endpoint);
  REQUIRE(c);
  CHECK_FALSE(c.value->port.has_value());

  auto d = parse_host_port("fd00::12", endpoint);
  REQUIRE(d);
  CHECK(d.value->host == "fd00::12");
  CHECK_FALSE(d.value->port.has_value());

  auto e = parse_host_port("vllm.local", endpoint);
  REQUIRE(e);
  CHECK_FALSE(e.value->is_ip);
  CHECK_FALSE(e.value->port.has_value());

  auto f = parse_host_port("vllm-0.models.svc.cluster.local:8000", endpoint);
  REQUIRE(f);
  CHECK(f.value->port == 8000);

  CHECK_FALSE(parse_host_port("10.0.0.1:0", endpoint));  // endpoints need a real port
  CHECK_FALSE(parse_host_port("10.0.0.1:65536", endpoint));
  CHECK_FALSE(parse_host_port("10.0.0.1:http", endpoint));
  CHECK_FALSE(parse_host_port("10.0.0.1:", endpoint));
  CHECK_FALSE(parse_host_port("300.1.1.1", endpoint));  // all-numeric: not a DNS name either
  CHECK_FALSE(parse_host_port("bad_host", endpoint));
  CHECK_FALSE(parse_host_port("-bad.example", endpoint));
  CHECK_FALSE(parse_host_port("[10.0.0.1]:80", endpoint));
  CHECK_FALSE(parse_host_port("[::1", endpoint));
  CHECK_FALSE(parse_host_port("", endpoint));
}

TEST_CASE("addresses: listener rules (port required, 0 allowed, IP only)") {
  HostPortRules listen{
      .require_port = true, .allow_port_zero = true, .require_ip = true, .allow_empty_host = true};
  auto a = parse_host_port("0.0.0.0:0", listen);
  REQUIRE(a);
  CHECK(a.value->port == 0);
  auto b = parse_host_port("[::]:8080", listen);
  REQUIRE(b);
  CHECK(b.value->host == "::");
  auto c = parse_host_port(":8080", listen);
  REQUIRE(c);
  CHECK(c.value->host == "0.0.0.0");
  CHECK(parse_host_port("0.0.0.0", listen).error.find("has no port") != std::string::npos);
  CHECK(parse_host_port("localhost:80", listen).error.find("127.0.0.1 instead of localhost") !=
        std::string::npos);
  CHECK(parse_host_port("::1", listen).error.find("[address]:port") != std::string::npos);
}

TEST_CASE("join_host_port brackets IPv6") {
  CHECK(join_host_port("10.0.0.1", 80) == "10.0.0.1:80");
  CHECK(join_host_port("::1", 80) == "[::1]:80");
  CHECK(join_host_port("vllm.local", 8000) == "vllm.local:8000");
}

TEST_CASE("Kubernetes names and label values") {
  CHECK(is_dns_subdomain("vllm-llama3-8b-instruct"));
  CHECK(is_dns_subdomain("a.b-c.d"));
  CHECK_FALSE(is_dns_subdomain("Upper"));
  CHECK_FALSE(is_dns_subdomain("-x"));
  CHECK_FALSE(is_dns_subdomain("x_y"));
  CHECK_FALSE(is_dns_subdomain(""));
  CHECK(is_dns_label("default"));
  CHECK_FALSE(is_dns_label("a.b"));
  CHECK_FALSE(is_dns_label("$E2E_NS"));
  CHECK(is_label_value(""));
  CHECK(is_label_value("123-my_value.x"));
  CHECK_FALSE(is_label_value("-x"));
  CHECK_FALSE(is_label_value("a b"));
  CHECK_FALSE(is_label_value(std::string(64, 'a')));
}

TEST_CASE("RFC 3339 timestamps") {
  CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_rfc3339("1970-01-01T00:00:01.5Z") == 1'500'000'000);
  CHECK(parse_rfc3339("2024-05-01T12:00:00+02:00") == parse_rfc3339("2024-05-01T10:00:00Z"));
  CHECK(*parse_rfc3339("2024-05-01T10:00:00Z") < *parse_rfc3339("2024-05-01T10:00:01Z"));
  CHECK_FALSE(parse_rfc3339("2024-05-01"));
  CHECK_FALSE(parse_rfc3339("2024-13-01T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("yesterday"));
  CHECK_FALSE(parse_rfc3339("2024-05-01T10:00:00"));  // no zone
}

TEST_CASE("closest_match for did-you-mean hints") {
  constexpr std::array<std::string_view, 3> words = {"workers", "listeners", "maxRetries"};
  CHECK(closest_match("workrs", words) == "workers");
  CHECK(closest_match("listener", words) == "listeners");
  CHECK(closest_match("maxretries", words) == "maxRetries");
  CHECK_FALSE(closest_match("colour", words).has_value());
}
