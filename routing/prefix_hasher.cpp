#include "routing/prefix_hasher.h"

// Inlined: a call per 72-byte block into the shared library costs more than the hashing.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace infergate::routing {
namespace {

// Blocks up to this size are assembled on the stack; larger ones (block sizes of hundreds of
// tokens) in a per-thread buffer.
constexpr size_t kStackBlock = 1024;

void put_le64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// Copies bytes [offset, offset + n) of the logical string head || body to dst.
void copy_range(std::string_view head, std::string_view body, size_t offset, size_t n,
                unsigned char* dst) {
  if (offset < head.size()) {
    const size_t from_head = std::min(n, head.size() - offset);
    std::memcpy(dst, head.data() + offset, from_head);
    dst += from_head;
    n -= from_head;
    offset = head.size();
  }
  if (n > 0) std::memcpy(dst, body.data() + (offset - head.size()), n);
}

}  // namespace

uint64_t PrefixHasher::seed(std::string_view model, std::string_view cache_salt) {
  if (cache_salt.empty()) return XXH64(model.data(), model.size(), 0);
  XXH64_state_t state;
  XXH64_reset(&state, 0);
  XXH64_update(&state, model.data(), model.size());
  XXH64_update(&state, cache_salt.data(), cache_salt.size());
  return XXH64_digest(&state);
}

void PrefixHasher::hash(std::string_view model, std::string_view cache_salt, std::string_view head,
                        std::string_view body, size_t block_bytes, size_t max_blocks,
                        std::vector<uint64_t>& out) {
  out.clear();
  const size_t total = head.size() + body.size();
  if (block_bytes == 0 || total < block_bytes || max_blocks == 0) return;
  const size_t blocks = std::min(total / block_bytes, max_blocks);
  out.resize(blocks);

  unsigned char stack_buf[kStackBlock + 8];
  thread_local std::vector<unsigned char> heap_buf;
  unsigned char* buf = stack_buf;
  if (block_bytes > kStackBlock) {
    if (heap_buf.size() < block_bytes + 8) heap_buf.resize(block_bytes + 8);
    buf = heap_buf.data();
  }

  uint64_t prev = seed(model, cache_salt);
  for (size_t i = 0; i < blocks; ++i) {
    const size_t offset = i * block_bytes;
    if (offset + block_bytes <= head.size()) {
      std::memcpy(buf, head.data() + offset, block_bytes);
    } else if (offset >= head.size()) {
      std::memcpy(buf, body.data() + (offset - head.size()), block_bytes);
    } else {
      copy_range(head, body, offset, block_bytes, buf);
    }
    put_le64(buf + block_bytes, prev);
    prev = XXH64(buf, block_bytes + 8, 0);
    out[i] = prev;
  }
}

}  // namespace infergate::routing
