#pragma once
// Chained block hashes of a prompt, the way GIE's approximate prefix-cache plugin computes them:
// the prompt bytes are cut into blocks of a fixed number of bytes (block size in tokens times an
// average number of bytes per token); the first hash is xxhash64(model || cache_salt); each
// block's hash is xxhash64(block bytes || previous hash as 8 little-endian bytes). A block hash
// therefore names the whole prefix up to and including that block, for that model. Only full
// blocks are hashed, and at most `max_blocks` of them.
//
// Stateless and thread-safe. Sans-I/O.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace infergate::routing {

class PrefixHasher {
 public:
  // The hash the chain starts from.
  static uint64_t seed(std::string_view model, std::string_view cache_salt);

  // Replaces `out` with the chained hashes of the full blocks of `head` followed by `body`
  // (logically one byte string: tools then prompt). Empty when shorter than one block or when
  // block_bytes is 0. Reuses `out`'s capacity.
  static void hash(std::string_view model, std::string_view cache_salt, std::string_view head,
                   std::string_view body, size_t block_bytes, size_t max_blocks,
                   std::vector<uint64_t>& out);
};

}  // namespace infergate::routing
