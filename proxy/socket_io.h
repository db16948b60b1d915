#pragma once
// Plain-TCP I/O done directly on the socket when it can complete at once. An Asio operation that
// completes immediately still goes through the scheduler: its completion is posted, and the
// coroutine resumes only after the next turn of the event loop (an epoll_wait, and the handler
// machinery around it). A request and its response nearly always fit the socket buffers, so the
// data path sends with one sendmsg() and reads with one recv() where it can, and falls back to
// Asio for the rest.

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstddef>

#include "proxy/asio.h"

namespace infergate::proxy {

// Sends what the socket takes now of `bufs` (at most 8 buffers). Returns the bytes sent; 0 with
// no error when the socket buffer is full; `ec` on a failure (a reset or closed connection).
template <typename ConstBuffers>
size_t send_now(tcp::socket& socket, const ConstBuffers& bufs, error_code& ec) {
  std::array<iovec, 8> iov{};
  size_t count = 0;
  for (auto it = asio::buffer_sequence_begin(bufs); it != asio::buffer_sequence_end(bufs); ++it) {
    const asio::const_buffer b(*it);
    if (b.size() == 0) continue;
    if (count == iov.size()) break;  // the rest goes through the fallback
    iov[count++] = iovec{const_cast<void*>(b.data()), b.size()};
  }
  if (count == 0) return 0;
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  for (;;) {
    const ssize_t n = ::sendmsg(socket.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      ec = error_code(errno, asio::error::get_system_category());
    return 0;
  }
}

// The rest of `bufs` after `sent` bytes, through Asio (which waits for the socket to drain).
template <typename ConstBuffers>
awaitable<error_code> send_rest(tcp::socket& socket, const ConstBuffers& bufs, size_t sent) {
  beast::buffers_suffix<ConstBuffers> rest(bufs);
  rest.consume(sent);
  auto [ec, n] = co_await asio::async_write(socket, rest, kNoThrow);
  co_return ec;
}

// One recv() without waiting, into `buffer`'s free space (prepare(room)). Returns the bytes
// read (committed); 0 at end of stream; -1 with no error when nothing is there (EAGAIN); -1
// with `ec` on a failure. `drained`: the socket was left empty (fewer bytes than asked, EAGAIN,
// or end of stream), which is what ReadAnchor::arm(true) needs to know.
template <typename DynamicBuffer>
ssize_t recv_now(tcp::socket& socket, DynamicBuffer& buffer, size_t room, bool& drained,
                 error_code& ec) {
  const auto space = buffer.prepare(room);
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), space.data(), space.size(), MSG_DONTWAIT);
    if (n > 0) {
      buffer.commit(static_cast<size_t>(n));
      drained = static_cast<size_t>(n) < space.size();
      return n;
    }
    if (n == 0) {
      drained = true;
      return 0;
    }
    if (errno == EINTR) continue;
    drained = errno == EAGAIN || errno == EWOULDBLOCK;
    if (!drained) ec = error_code(errno, asio::error::get_system_category());
    return -1;
  }
}

// What a socket holds, by a peek (MSG_PEEK: nothing is consumed): data, nothing yet, or its
// peer's close or reset. For a close that no readiness event reports (ReadAnchor).
enum class PeekResult { kData, kEmpty, kClosed };
inline PeekResult peek_now(tcp::socket& socket) {
  char byte;
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return PeekResult::kData;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return PeekResult::kEmpty;
    return PeekResult::kClosed;
  }
}

}  // namespace infergate::proxy
