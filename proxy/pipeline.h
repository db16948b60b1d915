#pragma once
// The request pipeline, protocol-neutral (SPEC §3-§5): extract model/stream from the body,
// resolve the model, pick an endpoint, rewrite the model, proxy to the endpoint's upstream
// pool with bounded retries before the first response byte, stream the response back event by
// event rewriting the model, read usage, record metrics. Every path ends in a response or an
// abort; counters are released by RAII on every path, including cancellation.

#include "proxy/asio.h"
#include "proxy/exchange.h"

namespace infergate::proxy {

class Worker;

// Answers `request` through `downstream`. Cancellable (the session cancels it when the client
// goes away): pending upstream I/O completes with operation_aborted and the upstream
// connection is closed, which the model server sees as a disconnect.
awaitable<void> run_pipeline(Worker* worker, DownstreamRequest* request, Downstream* downstream);

// Sends a gateway error with the OpenAI envelope.
// `retry_after_seconds` > 0 adds Retry-After (429, 503 from admission).
awaitable<bool> send_error(Downstream* downstream, const struct GatewayError& error,
                           const std::string& request_id, uint32_t retry_after_seconds = 0);

}  // namespace infergate::proxy
