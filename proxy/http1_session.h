#pragma once
// Downstream HTTP/1.1: keep-alive, pipelining-safe, chunked bodies, header/body limits and
// timeouts. Parses each request and runs it through the protocol-neutral pipeline while
// watching the socket, so a client that goes away aborts its upstream request at once.

#include <string>

#include "proxy/asio.h"
#include "proxy/exchange.h"
#include "proxy/worker.h"

namespace infergate::proxy {

// Serves one accepted connection until it closes. Runs on the worker's thread. `Stream` is
// beast::tcp_stream or beast::ssl_stream<beast::tcp_stream> (handshake done), owned by the
// caller, which registered it as `entry`; `buffer` holds bytes already read from it.
template <typename Stream>
awaitable<void> run_http1_session(Worker* worker, Stream& stream, Worker::SessionEntry& entry,
                                  ClientBuffer buffer, std::string client_address, bool tls);

}  // namespace infergate::proxy
