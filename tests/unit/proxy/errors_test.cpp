#include <doctest/doctest.h>
#include <simdjson.h>

#include "proxy/errors.h"

using infergate::proxy::error_body;
using infergate::proxy::GatewayError;

namespace {

// Parses an error envelope back and returns its fields.
struct Parsed {
  std::string message, type, code;
  bool param_null = false;
  std::string param;
};

Parsed parse(const std::string& body) {
  simdjson::dom::parser parser;
  auto doc = parser.parse(body);
  REQUIRE(doc.error() == simdjson::SUCCESS);
  auto err = doc["error"];
  REQUIRE(err.error() == simdjson::SUCCESS);
  Parsed p;
  p.message = std::string(std::string_view(err["message"]));
  p.type = std::string(std::string_view(err["type"]));
  p.code = std::string(std::string_view(err["code"]));
  auto param = err["param"];
  p.param_null = param.is_null();
  if (!p.param_null) p.param = std::string(std::string_view(param));
  return p;
}

}  // namespace

TEST_CASE("error envelope has OpenAI's shape for every constructor") {
  const GatewayError all[] = {GatewayError::bad_request("bad", "model"),
                              GatewayError::model_not_found("m"),
                              GatewayError::not_found("/x"),
                              GatewayError::method_not_allowed("GET", "/v1/x"),
                              GatewayError::request_timeout(),
                              GatewayError::payload_too_large(10),
                              GatewayError::headers_too_large(10),
                              GatewayError::bad_gateway("b"),
                              GatewayError::unavailable("u"),
                              GatewayError::gateway_timeout("t")};
  const int statuses[] = {400, 404, 404, 405, 408, 413, 431, 502, 503, 504};
  for (size_t i = 0; i < std::size(all); ++i) {
    CAPTURE(i);
    CHECK(all[i].status == statuses[i]);
    const auto p = parse(error_body(all[i]));
    CHECK(!p.message.empty());
    CHECK(!p.type.empty());
    CHECK(!p.code.empty());
  }
}

TEST_CASE("error envelope escapes messages and reports param") {
  auto e = GatewayError::bad_request("quote \" backslash \\ newline \n ctl \x01", "model");
  const auto p = parse(error_body(e));
  CHECK(p.message == "quote \" backslash \\ newline \n ctl \x01");
  CHECK(p.type == "invalid_request_error");
  CHECK_FALSE(p.param_null);
  CHECK(p.param == "model");

  const auto q = parse(error_body(GatewayError::bad_gateway("x")));
  CHECK(q.param_null);
  CHECK(q.type == "server_error");
  CHECK(q.code == "upstream_error");
}

TEST_CASE("model_not_found names the model") {
  const auto p = parse(error_body(GatewayError::model_not_found("llama\"3")));
  CHECK(p.code == "model_not_found");
  CHECK(p.message.find("llama\"3") != std::string::npos);
}
