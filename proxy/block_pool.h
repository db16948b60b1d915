#pragma once
// A per-worker cache of fixed-size memory blocks for the exchanges' header arenas
// (std::pmr::monotonic_buffer_resource upstream). An exchange takes a block and gives it back
// when it ends, so in a steady state no header field costs a heap allocation and an idle
// connection holds no arena memory. Requests larger than a block go to the heap. One thread
// only (the worker's): no locking.

#include <cstddef>
#include <memory_resource>
#include <new>
#include <vector>

namespace infergate::proxy {

class BlockPool final : public std::pmr::memory_resource {
 public:
  static constexpr size_t kBlockSize = 4096;
  // The initial size to give a std::pmr::monotonic_buffer_resource over this pool: it asks its
  // upstream for a little more than that (its own bookkeeping), which must still fit a block.
  static constexpr size_t kArenaInitialSize = kBlockSize - 256;
  explicit BlockPool(size_t max_cached = 256) : max_cached_(max_cached) {}
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  ~BlockPool() override {
    for (void* p : free_) ::operator delete (p, kBlockSize, std::align_val_t{kAlign});
  }
  size_t cached() const { return free_.size(); }

 private:
  static constexpr size_t kAlign = alignof(std::max_align_t);

  void* do_allocate(size_t bytes, size_t alignment) override {
    if (bytes > kBlockSize || alignment > kAlign) return heap()->allocate(bytes, alignment);
    if (!free_.empty()) {
      void* p = free_.back();
      free_.pop_back();
      return p;
    }
    return ::operator new (kBlockSize, std::align_val_t{kAlign});
  }

  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    if (bytes > kBlockSize || alignment > kAlign) return heap()->deallocate(p, bytes, alignment);
    if (free_.size() < max_cached_) {
      free_.push_back(p);
      return;
    }
    ::operator delete (p, kBlockSize, std::align_val_t{kAlign});
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  static std::pmr::memory_resource* heap() { return std::pmr::new_delete_resource(); }

  size_t max_cached_;
  std::vector<void*> free_;
};

}  // namespace infergate::proxy
