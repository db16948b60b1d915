#include "sim/json_text.h"
#include "sim/request_log.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <string>

namespace infergate::sim {
namespace {

std::string json_quoted(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

std::string number(double v) {
  std::string out;
  append_json_double(out, v);
  return out;
}

}  // namespace

TEST_CASE("json: string escapes") {
  CHECK(json_quoted("plain") == R"("plain")");
  CHECK(json_quoted("a\"b\\c") == R"("a\"b\\c")");
  CHECK(json_quoted("l1\nl2\t\r") == R"("l1\nl2\t\r")");
  CHECK(json_quoted(std::string("\x01", 1)) == R"("\u0001")");
  CHECK(json_quoted("caf\xC3\xA9 \xE2\x82\xAC") == "\"caf\xC3\xA9 \xE2\x82\xAC\"");
}

TEST_CASE("json: invalid UTF-8 becomes U+FFFD so the output stays valid") {
  const std::string out = json_quoted(
      "a\xFF"
      "b\xC3");
  CHECK(out ==
        "\"a\xEF\xBF\xBD"
        "b\xEF\xBF\xBD\"");
  CHECK(json_quoted("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // surrogate
  simdjson::dom::parser parser;
  CHECK(parser.parse(out).error() == simdjson::SUCCESS);
}

TEST_CASE("json: doubles as Python writes them") {
  CHECK(number(1.0) == "1.0");
  CHECK(number(0.5) == "0.5");
  CHECK(number(-0.25) == "-0.25");
  CHECK(number(1e-05) == "1e-05");
  CHECK(number(1e16) == "1e+16");
}

TEST_CASE("request log: bounded, oldest first, headers merged, valid JSON") {
  RequestLog log;
  for (int i = 0; i < 205; ++i) {
    RecordedRequest r;
    r.method = "POST";
    r.target = "/v1/completions?i=" + std::to_string(i);
    r.headers = {{"x-a", "1"}, {"x-a", "2"}, {"content-type", "application/json"}};
    r.body = R"({"model":"m"})";
    log.add(std::move(r));
  }
  CHECK(log.size() == RequestLog::kCapacity);
  const std::string json = log.to_json();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
  const auto requests = doc["requests"].get_array().value();
  REQUIRE(requests.size() == RequestLog::kCapacity);
  const auto first = requests.at(0).value();
  CHECK(first["path"].get_string().value() == "/v1/completions?i=5");
  CHECK(first["method"].get_string().value() == "POST");
  CHECK(first["headers"]["x-a"].get_string().value() == "1, 2");
  CHECK(first["body"].get_string().value() == R"({"model":"m"})");
  log.clear();
  CHECK(log.to_json() == R"({"requests":[]})");
}

}  // namespace infergate::sim
