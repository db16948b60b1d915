#include <doctest/doctest.h>

#include "discovery/backoff.h"

using namespace infergate::discovery;
using std::chrono::milliseconds;

TEST_CASE("backoff doubles up to the cap, with jitter in [d/2, d]") {
  double u = 0.0;
  Backoff b(milliseconds(100), milliseconds(1000), [&] { return u; });
  CHECK(b.next() == milliseconds(50));   // d = 100
  CHECK(b.next() == milliseconds(100));  // d = 200
  u = 0.999;
  CHECK(b.next() >= milliseconds(390));  // d = 400
  CHECK(b.next() <= milliseconds(800));  // d = 800
  for (int i = 0; i < 100; ++i) CHECK(b.next() <= milliseconds(1000));
  u = 0.0;
  CHECK(b.next() == milliseconds(500));  // capped: d = 1000
  b.reset();
  CHECK(b.attempt() == 0);
  CHECK(b.next() == milliseconds(50));
}
