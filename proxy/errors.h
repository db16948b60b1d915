#pragma once
// The gateway's own error responses: OpenAI's JSON envelope (SPEC §5).

#include <string>
#include <string_view>

#include "common/json_escape.h"

namespace infergate::proxy {

struct GatewayError {
  int status = 500;
  std::string_view type;  // "invalid_request_error", "rate_limit_error", "server_error", ...
  std::string_view code;  // "model_not_found", "upstream_timeout", ...
  std::string message;
  std::string param;  // empty -> null

  // Common constructors, one per row of SPEC §5.
  static GatewayError bad_request(std::string message, std::string param = {});
  static GatewayError model_not_found(std::string_view model);
  static GatewayError not_found(std::string_view path);
  static GatewayError method_not_allowed(std::string_view method, std::string_view path);
  static GatewayError request_timeout();
  static GatewayError payload_too_large(uint64_t limit);
  static GatewayError headers_too_large(uint32_t limit);
  // 429: code is "pool_saturated" (sheddable request, saturated pool) or "queue_full".
  static GatewayError too_many_requests(std::string_view code, std::string message);
  static GatewayError bad_gateway(std::string message);
  static GatewayError unavailable(std::string message);
  static GatewayError gateway_timeout(std::string message);
};

// {"error":{"message":...,"type":...,"param":...,"code":...}}
std::string error_body(const GatewayError& e);

using infergate::append_json_escaped;

}  // namespace infergate::proxy
