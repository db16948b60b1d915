#pragma once
// Feeds a Beast parser from bytes already read, without I/O: requests (HTTP/1.1 sessions) and
// upstream responses (the pipeline) are parsed straight from their connection's buffer, and a
// read is started only when this says more input is needed. Usually a whole request, or a
// response's head and body, arrives with one read, so no composed read operation (nor its
// deadline timer) is started at all.

#include "proxy/asio.h"

namespace infergate::proxy {

// Feeds `parser` what `buffer` holds: through the end of the header (header_only), else through
// the end of the message. True when that goal is reached, or when a buffer_body's buffer is
// full (the caller hands the bytes on and feeds again); false when more input is needed or on
// a parse error (`ec`).
template <typename Parser, typename DynamicBuffer>
bool feed_parser(Parser& parser, DynamicBuffer& buffer, bool header_only, error_code& ec) {
  parser.eager(!header_only);
  const auto complete = [&] { return header_only ? parser.is_header_done() : parser.is_done(); };
  while (!complete() && buffer.size() > 0) {
    const size_t n = parser.put(buffer.data(), ec);
    buffer.consume(n);
    if (ec == http::error::need_more) {
      ec = {};
      return false;
    }
    if (ec == http::error::need_buffer) {  // the body buffer is full
      ec = {};
      return !header_only || parser.is_header_done();
    }
    if (ec) return false;
    if (n == 0) break;
  }
  return complete();
}

}  // namespace infergate::proxy
