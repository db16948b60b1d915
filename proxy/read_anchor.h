#pragma once
// A readiness wait kept pending on a socket's read queue, armed without a syscall.
//
// Asio registers each socket in epoll once, edge-triggered. An edge that arrives while no read
// operation is queued on the socket is consumed by epoll_wait and lost, so Asio starts every
// read in a way that cannot miss data that came before it: a speculative recv() first (EAGAIN
// on nearly every wait for an upstream response), or, for async_wait, an EPOLL_CTL_MOD that
// re-reports the socket's current state. Either is one syscall per wait.
//
// A socket with an operation queued at all times loses no edge, and a wait queued behind a
// pending one is just appended (no syscall). The anchor is that pending operation. arm(true)
// must be called right after a recv() that left the socket empty (it returned less than it
// asked for, or EAGAIN), before control returns to the event loop: no epoll_wait ran in
// between, so anything that arrives later is still in epoll's ready list and completes the
// anchor. The wait is then queued with no syscall at all. One thing a short read does not rule
// out: the peer's close (or reset) arriving together with the data, which the next recv()
// would report; the anchor does not. Callers that must see it read once more first (EAGAIN
// rules it out). arm(false) (state unknown) queues the wait the usual way, with the re-arm.
//
// Queuing without the re-arm needs Asio's reactor internals (boost::asio::detail, as of Boost
// 1.81's epoll_reactor: reactor_op, epoll_reactor::start_op, the socket's per-descriptor data);
// Asio has no public way to do it. With any other Boost version or reactor the anchor falls
// back to socket.async_wait, which is correct but pays the syscall.
//
// When the anchor completes (readable, closed, reset, or cancelled: operation_aborted) it calls
// `fired`. Owned by the socket's thread. The anchor may go before its pending operation: the
// operation then completes (at the latest when the socket closes) without calling back.

#include <boost/version.hpp>

#include <memory>

#include "proxy/asio.h"

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_DISABLE_EPOLL)
#define INFERGATE_READ_ANCHOR_INTERNALS 1
#else
#define INFERGATE_READ_ANCHOR_INTERNALS 0
#endif

namespace infergate::proxy {

class ReadAnchor {
 public:
  using Callback = void (*)(void* context, const error_code& ec);

  ReadAnchor(tcp::socket& socket, Callback fired, void* context)
      : socket_(&socket), fired_(fired), context_(context) {}
  ReadAnchor(const ReadAnchor&) = delete;
  ReadAnchor& operator=(const ReadAnchor&) = delete;
  ~ReadAnchor() { detach(); }

  bool pending() const { return pending_ != nullptr; }

  // Queues the wait unless one is pending. `drained`: see above.
  void arm(bool drained);

  // Forgets the pending wait: it completes without calling back.
  void detach();

  // Whether arm(true) queues without a syscall in this build.
  static constexpr bool kWithoutSyscall = INFERGATE_READ_ANCHOR_INTERNALS != 0;

 private:
  struct Op;
  void completed(const error_code& ec) {
    pending_ = nullptr;
    fired_(context_, ec);
  }

  tcp::socket* socket_;
  Callback fired_;
  void* context_;
  Op* pending_ = nullptr;
};

#if INFERGATE_READ_ANCHOR_INTERNALS

// The queued operation: a wait (done on any event), except for the speculative attempt that
// start_op makes when it is queued, which it declines (the socket is known to be empty).
struct ReadAnchor::Op final : asio::detail::reactor_op {
  explicit Op(ReadAnchor* a)
      : reactor_op(error_code(), &Op::do_perform, &Op::do_complete), anchor(a) {}

  static status do_perform(reactor_op* base) {
    return static_cast<Op*>(base)->starting ? not_done : done;
  }
  // owner == nullptr: the io_context is being destroyed; no upcall.
  static void do_complete(void* owner, asio::detail::scheduler_operation* base,
                          const error_code& /*ec*/, std::size_t /*bytes*/) {
    Op* op = static_cast<Op*>(base);
    ReadAnchor* a = op->anchor;
    const error_code ec = op->ec_;
    delete op;
    if (a == nullptr) return;
    if (owner == nullptr) {
      a->pending_ = nullptr;
      return;
    }
    a->completed(ec);
  }

  ReadAnchor* anchor;
  bool starting = false;
};

namespace read_anchor_detail {
// The socket's implementation (descriptor and reactor registration) is a protected member of
// basic_socket; a pointer to it formed through a derived class is the sanctioned way in.
struct SocketAccess : tcp::socket {
  static auto& impl(tcp::socket& s) { return (s.*(&SocketAccess::impl_)).get_implementation(); }
};
}  // namespace read_anchor_detail

inline void ReadAnchor::arm(bool drained) {
  if (pending_ != nullptr || !socket_->is_open()) return;
  auto& impl = read_anchor_detail::SocketAccess::impl(*socket_);
  auto& reactor = asio::use_service<asio::detail::reactor>(
      asio::query(socket_->get_executor(), asio::execution::context));
  Op* op = new Op(this);
  pending_ = op;
  // Allowing the speculative attempt is what skips the re-arm for a read; the attempt itself
  // is declined. Queued (or posted with an error) either way: `op` is alive after the call.
  op->starting = true;
  reactor.start_op(asio::detail::reactor::read_op, impl.socket_, impl.reactor_data_, op, false,
                   drained);
  op->starting = false;
}

inline void ReadAnchor::detach() {
  if (pending_ == nullptr) return;
  pending_->anchor = nullptr;
  pending_ = nullptr;
}

#else  // portable fallback: Asio's own wait (re-arms the descriptor on every arm)

struct ReadAnchor::Op {
  ReadAnchor* anchor;
};

inline void ReadAnchor::arm(bool /*drained*/) {
  if (pending_ != nullptr || !socket_->is_open()) return;
  auto link = std::make_shared<Op>(Op{this});
  pending_ = link.get();
  socket_->async_wait(tcp::socket::wait_read, [link](const error_code& ec) {
    if (link->anchor != nullptr) link->anchor->completed(ec);
  });
}

inline void ReadAnchor::detach() {
  if (pending_ == nullptr) return;
  pending_->anchor = nullptr;
  pending_ = nullptr;
}

#endif

}  // namespace infergate::proxy
