#include "proxy/errors.h"

#include <fmt/format.h>

namespace infergate::proxy {

std::string error_body(const GatewayError& e) {
  std::string out = "{\"error\":{\"message\":\"";
  append_json_escaped(out, e.message);
  out += "\",\"type\":\"";
  append_json_escaped(out, e.type);
  out += "\",\"param\":";
  if (e.param.empty()) {
    out += "null";
  } else {
    out += '"';
    append_json_escaped(out, e.param);
    out += '"';
  }
  out += ",\"code\":\"";
  append_json_escaped(out, e.code);
  out += "\"}}";
  return out;
}

GatewayError GatewayError::bad_request(std::string message, std::string param) {
  return {400, "invalid_request_error", "invalid_request", std::move(message), std::move(param)};
}
GatewayError GatewayError::model_not_found(std::string_view model) {
  return {404, "invalid_request_error", "model_not_found",
          fmt::format("The model `{}` does not exist or is not served by this gateway.", model),
          "model"};
}
GatewayError GatewayError::not_found(std::string_view path) {
  return {404,
          "invalid_request_error",
          "not_found",
          fmt::format("Unknown path {} (routed requests are POSTs with a JSON \"model\").", path),
          {}};
}
GatewayError GatewayError::method_not_allowed(std::string_view method, std::string_view path) {
  return {405,
          "invalid_request_error",
          "method_not_allowed",
          fmt::format("Method {} is not allowed on {}.", method, path),
          {}};
}
GatewayError GatewayError::request_timeout() {
  return {408,
          "invalid_request_error",
          "request_timeout",
          "The client took too long to send the request.",
          {}};
}
GatewayError GatewayError::payload_too_large(uint64_t limit) {
  return {413,
          "invalid_request_error",
          "request_too_large",
          fmt::format("The request body is larger than the limit of {} bytes.", limit),
          {}};
}
GatewayError GatewayError::headers_too_large(uint32_t limit) {
  return {431,
          "invalid_request_error",
          "request_header_fields_too_large",
          fmt::format("The request headers are larger than the limit of {} bytes.", limit),
          {}};
}
GatewayError GatewayError::too_many_requests(std::string_view code, std::string message) {
  return {429, "rate_limit_error", code, std::move(message), {}};
}
GatewayError GatewayError::bad_gateway(std::string message) {
  return {502, "server_error", "upstream_error", std::move(message), {}};
}
GatewayError GatewayError::unavailable(std::string message) {
  return {503, "server_error", "service_unavailable", std::move(message), {}};
}
GatewayError GatewayError::gateway_timeout(std::string message) {
  return {504, "server_error", "upstream_timeout", std::move(message), {}};
}

}  // namespace infergate::proxy
