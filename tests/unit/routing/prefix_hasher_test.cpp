#include "routing/prefix_hasher.h"

#include <doctest/doctest.h>
#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "routing_test_util.h"

using infergate::routing::PrefixHasher;
using infergate::routing::test::make_prompt;

TEST_CASE("prefix hashes chain xxhash64(block || previous, little-endian) from xxhash64(model)") {
  const std::string prompt = make_prompt(200, 1);
  std::vector<uint64_t> got;
  PrefixHasher::hash("llama", "", "", prompt, 64, 256, got);
  REQUIRE(got.size() == 3);  // 200 / 64, the partial tail is not hashed
  uint64_t prev = XXH64("llama", 5, 0);
  for (size_t i = 0; i < 3; ++i) {
    unsigned char buf[72];
    std::memcpy(buf, prompt.data() + i * 64, 64);
    for (int b = 0; b < 8; ++b) buf[64 + b] = static_cast<unsigned char>(prev >> (8 * b));
    prev = XXH64(buf, sizeof buf, 0);
    CHECK(got[i] == prev);
  }
  // The cache salt joins the model in the first hash.
  CHECK(PrefixHasher::seed("llama", "salt") == XXH64("llamasalt", 9, 0));
}

TEST_CASE("prefix hashes: shared prefixes share hashes, the model and salt separate them") {
  const std::string a = make_prompt(1024, 1, 512);
  const std::string b = make_prompt(1024, 2, 512);
  std::vector<uint64_t> ha, hb, hm, hs;
  PrefixHasher::hash("m", "", "", a, 64, 256, ha);
  PrefixHasher::hash("m", "", "", b, 64, 256, hb);
  PrefixHasher::hash("other", "", "", a, 64, 256, hm);
  PrefixHasher::hash("m", "s", "", a, 64, 256, hs);
  REQUIRE(ha.size() == 16);
  for (size_t i = 0; i < 8; ++i) CHECK(ha[i] == hb[i]);
  for (size_t i = 8; i < 16; ++i) CHECK(ha[i] != hb[i]);  // and every later one, by chaining
  for (size_t i = 0; i < 16; ++i) {
    CHECK(ha[i] != hm[i]);
    CHECK(ha[i] != hs[i]);
  }
}

TEST_CASE("prefix hashes: tools then prompt is one logical byte string") {
  const std::string tools = make_prompt(100, 3);
  const std::string prompt = make_prompt(300, 4);
  std::vector<uint64_t> split, joined;
  PrefixHasher::hash("m", "", tools, prompt, 64, 256, split);
  PrefixHasher::hash("m", "", "", tools + prompt, 64, 256, joined);
  CHECK(split == joined);
  CHECK(split.size() == 6);
  // Large blocks take the per-thread buffer path.
  PrefixHasher::hash("m", "", tools, prompt, 2000 / 10 * 10, 256, split);
  PrefixHasher::hash("m", "", "", tools + prompt, 2000 / 10 * 10, 256, joined);
  CHECK(split.empty());  // 400 bytes < one 2000-byte block
  const std::string big = make_prompt(5000, 5);
  PrefixHasher::hash("m", "", big.substr(0, 1500), big.substr(1500), 2000, 256, split);
  PrefixHasher::hash("m", "", "", big, 2000, 256, joined);
  CHECK(split.size() == 2);
  CHECK(split == joined);
}

TEST_CASE("prefix hashes: short prompts, zero block size and the block cap") {
  std::vector<uint64_t> out = {1, 2, 3};
  PrefixHasher::hash("m", "", "", "short", 64, 256, out);
  CHECK(out.empty());
  PrefixHasher::hash("m", "", "", make_prompt(640, 1), 0, 256, out);
  CHECK(out.empty());
  PrefixHasher::hash("m", "", "", make_prompt(64 * 300, 1), 64, 256, out);
  CHECK(out.size() == 256);
  PrefixHasher::hash("m", "", "", make_prompt(640, 1), 64, 0, out);
  CHECK(out.empty());
}
