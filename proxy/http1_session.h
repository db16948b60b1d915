#pragma once
// Downstream HTTP/1.1: keep-alive, pipelining-safe, chunked bodies, header/body limits and
// timeouts. Parses each request and runs it through the protocol-neutral pipeline while
// watching the socket, so a client that goes away aborts its upstream request at once.

#include "proxy/asio.h"

namespace infergate::proxy {

class Worker;

// Serves one accepted connection until it closes. Runs on the worker's thread; owns the socket.
awaitable<void> run_http1_session(Worker* worker, tcp::socket socket, bool tls);

}  // namespace infergate::proxy
