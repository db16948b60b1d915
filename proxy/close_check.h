#pragma once
// Connections whose peer may have closed with no event left to report it. A ReadAnchor armed
// after a short read (proxy/read_anchor.h) sees everything that arrives later, but not a close
// (or reset) that came together with the data it read. Such a connection links its CloseCheck
// into its worker's list; within Worker::kCloseCheckInterval the worker unlinks it and calls it
// once (the check peeks at the socket). A connection that stays busy is checked once per
// interval however many reads it makes, and a quiet worker has nothing to walk.
//
// Intrusive and circular, so a check unlinks itself (when it is called, or destroyed) in O(1)
// without knowing its list. One thread (the worker's).

#include <cstddef>

namespace infergate::proxy {

class CloseCheck {
 public:
  using Fn = void (*)(void* context);
  CloseCheck(Fn fn, void* context) : fn_(fn), context_(context) {}
  CloseCheck(const CloseCheck&) = delete;
  CloseCheck& operator=(const CloseCheck&) = delete;
  ~CloseCheck() { unlink(); }

  bool linked() const { return next_ != nullptr; }
  void unlink() {
    if (!linked()) return;
    prev_->next_ = next_;
    next_->prev_ = prev_;
    prev_ = next_ = nullptr;
  }

 private:
  friend class CloseCheckList;
  CloseCheck() = default;  // the list's head
  Fn fn_ = nullptr;
  void* context_ = nullptr;
  CloseCheck* prev_ = nullptr;
  CloseCheck* next_ = nullptr;
};

class CloseCheckList {
 public:
  // `start` is called when the list goes from empty to not empty (the worker starts its sweep).
  CloseCheckList(void (*start)(void*), void* context) : start_(start), context_(context) {
    head_.prev_ = head_.next_ = &head_;
  }
  CloseCheckList(const CloseCheckList&) = delete;
  CloseCheckList& operator=(const CloseCheckList&) = delete;
  ~CloseCheckList() {
    while (!empty()) head_.next_->unlink();
    head_.prev_ = head_.next_ = nullptr;
  }

  bool empty() const { return head_.next_ == &head_; }

  // Links `c` (once: a linked check stays where it is).
  void schedule(CloseCheck& c) {
    if (c.linked()) return;
    const bool was_empty = empty();
    c.prev_ = head_.prev_;
    c.next_ = &head_;
    head_.prev_->next_ = &c;
    head_.prev_ = &c;
    if (was_empty && start_ != nullptr) start_(context_);
  }

  // Unlinks and calls every check linked now (one a check links again waits for the next
  // run). Returns how many ran.
  size_t run() {
    CloseCheck pending;  // move the list aside: checks may link themselves again
    if (empty()) return 0;
    pending.next_ = head_.next_;
    pending.prev_ = head_.prev_;
    pending.next_->prev_ = &pending;
    pending.prev_->next_ = &pending;
    head_.prev_ = head_.next_ = &head_;
    size_t n = 0;
    while (pending.next_ != &pending) {
      CloseCheck* c = pending.next_;
      c->unlink();
      c->fn_(c->context_);
      ++n;
    }
    pending.prev_ = pending.next_ = nullptr;
    return n;
  }

 private:
  CloseCheck head_;
  void (*start_)(void*);
  void* context_;
};

}  // namespace infergate::proxy
