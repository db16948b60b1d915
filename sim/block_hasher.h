#pragma once
// Identity of KV-cache blocks, as vLLM's prefix cache computes it: the token stream is cut into
// blocks of block_size tokens and block i is named by a chained hash H(hash of block i-1, token ids
// of block i), so two requests share block i exactly when they share every token up to its end.
//
// The simulator has no vocabulary: a "token id" is a 64-bit hash of what the approximate tokenizer
// (tokenizer.h) calls one token, e.g. one 4-byte group of prompt text, so two prompts that share a
// text prefix share its tokens and hence its blocks. Collisions are astronomically unlikely and
// would only make the simulated cache a little too good. Sans-I/O, header-only, copyable.

#include "sim/tokenizer.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace infergate::sim {

// splitmix64's finaliser: a bijective 64-bit mix, so chaining it keeps the token order.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr uint64_t fnv1a64(std::string_view bytes, uint64_t hash = 14695981039346656037ULL) {
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

class BlockHasher {
 public:
  static constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;

  // block_size < 1 is treated as 1.
  explicit BlockHasher(int64_t block_size = 16)
      : block_size_(block_size < 1 ? 1 : block_size), state_(kRootHash) {}

  int64_t block_size() const { return block_size_; }
  // Tokens fed so far; full blocks have a hash, the rest wait for their block to fill.
  int64_t tokens() const { return tokens_; }
  const std::vector<uint64_t>& block_hashes() const { return hashes_; }

  void add_token(uint64_t token_id) {
    state_ = mix64(state_ ^ mix64(token_id + static_cast<uint64_t>(in_block_)));
    ++tokens_;
    if (++in_block_ == block_size_) {
      hashes_.push_back(mix64(state_ ^ 0x5bd1e9955bd1e995ULL));
      state_ = hashes_.back();
      in_block_ = 0;
    }
  }

  // Text as the approximate tokenizer cuts it: one token per started kBytesPerToken-byte group
  // (count_text_tokens(text) tokens), each named by the hash of its bytes.
  void add_text(std::string_view text) {
    for (size_t at = 0; at < text.size(); at += kBytesPerToken) {
      add_token(fnv1a64(text.substr(at, kBytesPerToken)));
    }
  }

 private:
  int64_t block_size_;
  uint64_t state_;
  int64_t in_block_ = 0;
  int64_t tokens_ = 0;
  std::vector<uint64_t> hashes_;
};

}  // namespace infergate::sim
