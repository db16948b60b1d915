#pragma once
// The protocol-neutral seam between a downstream session (HTTP/1.1 or HTTP/2) and the
// request pipeline: the session parses a request into a DownstreamRequest and hands the
// pipeline a Downstream to answer through. One pipeline body serves every protocol.

#include <chrono>
#include <memory_resource>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proxy/asio.h"

namespace infergate::proxy {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Header fields of requests and upstream responses. Their allocator is polymorphic so that an
// HTTP/1.1 session can give each exchange an arena (one block instead of an allocation per
// field); default-constructed, it uses the global heap.
using FieldsAllocator = std::pmr::polymorphic_allocator<char>;
using Fields = http::basic_fields<FieldsAllocator>;
using Request = http::request<http::string_body, Fields>;
using RequestParser = http::request_parser<http::string_body, FieldsAllocator>;

// A client connection's read buffer. Its memory comes from the worker's BlockPool (one 4 KiB
// block for a typical request), so a connection that goes idle gives it back and the next
// request takes it again without a heap allocation.
using ClientBuffer = beast::basic_flat_buffer<std::pmr::polymorphic_allocator<char>>;

struct DownstreamRequest {
  Request msg;  // headers and the whole (bounded) body
  // Where the exchange's other short-lived fields (the upstream response's) are allocated:
  // the same arena as msg's, or the heap.
  FieldsAllocator fields_allocator;
  std::string client_address;                         // peer IP, for x-forwarded-for
  bool tls = false;                                   // for x-forwarded-proto
  std::chrono::steady_clock::time_point received_at;  // when the headers were complete
};

// How the pipeline answers. Each method sends one thing and returns false once the client is
// gone (the pipeline then stops and releases the upstream). At most one call is in flight.
class Downstream {
 public:
  virtual ~Downstream() = default;
  // A whole response with a known body (errors, buffered JSON, /v1/models).
  virtual awaitable<bool> send_response(int status, HeaderList headers, std::string body) = 0;
  // The head of a streamed response; content_length unset means "until finish()".
  virtual awaitable<bool> send_head(int status, HeaderList headers,
                                    std::optional<uint64_t> content_length) = 0;
  // Body bytes of a streamed response, sent (flushed) before returning.
  virtual awaitable<bool> send_data(std::string_view data) = 0;
  // Ends a streamed response cleanly.
  virtual awaitable<bool> finish() = 0;
  // Ends a streamed response abnormally (the upstream broke mid-stream): the client must see
  // a truncated response, never a clean end. HTTP/1.1 closes the connection.
  virtual void abort() = 0;
};

}  // namespace infergate::proxy
