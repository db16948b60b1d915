#pragma once
// The admin listener (SPEC §8): /healthz, /readyz, /metrics, /debug/endpoints, /debug/config.
// Runs on the control thread's io_context, never on a worker.

#include <atomic>
#include <memory>
#include <string>

#include "proxy/asio.h"
#include "proxy/gateway_context.h"

namespace infergate::proxy {

struct MetricsSnapshot;

class AdminServer {
 public:
  AdminServer(asio::io_context& io, GatewayContext& context, const std::atomic<bool>& listeners_up);

  // Binds; returns the bound address ("127.0.0.1:9090") or an error message via `error`.
  bool listen(const std::string& host, uint16_t port, std::string* bound, std::string* error);
  void start();
  void stop();

  // Exposed for tests and --check style tooling.
  // `samples` may be null or of another generation (then no metrics are shown).
  static std::string endpoints_json(const RuntimeState& state, const MetricsSnapshot* samples);
  static std::string config_json(const config::Snapshot& snapshot);

 private:
  static awaitable<void> accept_loop(AdminServer* self);
  static awaitable<void> serve(AdminServer* self, tcp::socket socket);
  http::response<http::string_body> handle(const http::request<http::string_body>& req);

  asio::io_context& io_;
  GatewayContext& context_;
  const std::atomic<bool>& listeners_up_;
  tcp::acceptor acceptor_;
};

}  // namespace infergate::proxy
