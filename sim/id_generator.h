#pragma once
// Random ids shaped like vLLM's random_uuid(): 32 lowercase hex digits (uuid4().hex). Seedable
// so runs with --seed are reproducible. Not thread-safe.

#include <cstdint>
#include <random>
#include <string>

namespace infergate::sim {

class IdGenerator {
 public:
  explicit IdGenerator(uint64_t seed) : rng_(seed) {}

  std::string next_hex() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (size_t i = 0; i < id.size(); i += 16) {
      uint64_t bits = rng_();
      for (size_t k = 0; k < 16; ++k, bits >>= 4) id[i + k] = kHex[bits & 0xF];
    }
    return id;
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

}  // namespace infergate::sim
