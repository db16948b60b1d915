#include "routing/flow_queue.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using infergate::routing::FlowQueue;
using Queue = FlowQueue<std::string>;
using namespace std::chrono_literals;

namespace {
const Queue::TimePoint t0{};

std::vector<std::string> drain(Queue& q) {
  std::vector<std::string> out;
  while (auto e = q.pop()) out.push_back(e->value);
  return out;
}
}  // namespace

TEST_CASE("flow queue: strict priority, first come first served within a priority") {
  Queue q;
  q.push("s1", -1, 10, t0);
  q.push("a1", 0, 10, t0 + 1ms);
  q.push("c1", 1, 10, t0 + 2ms);
  q.push("a2", 0, 10, t0 + 3ms);
  q.push("s2", -1, 10, t0 + 4ms);
  q.push("c2", 1, 10, t0 + 5ms);
  CHECK(q.size() == 6);
  CHECK(q.bytes() == 60);
  CHECK(q.peek()->value == "c1");
  CHECK(drain(q) == std::vector<std::string>{"c1", "c2", "a1", "a2", "s1", "s2"});
  CHECK(q.empty());
  CHECK(q.bytes() == 0);
  CHECK_FALSE(q.pop().has_value());
}

TEST_CASE("flow queue: bounded in count and bytes") {
  Queue::Limits l;
  l.max_requests = 3;
  l.max_bytes = 100;
  l.displace_lower_priority = false;
  Queue q(l);
  CHECK(q.push("a", 0, 40, t0).status == Queue::Status::kQueued);
  CHECK(q.push("b", 0, 40, t0).status == Queue::Status::kQueued);
  CHECK(q.push("c", 0, 40, t0).status == Queue::Status::kFull);  // bytes
  CHECK(q.push("c", 0, 20, t0).status == Queue::Status::kQueued);
  CHECK(q.push("d", 0, 0, t0).status == Queue::Status::kFull);  // count
  CHECK(q.push("e", 5, 101, t0).status == Queue::Status::kTooLarge);
  CHECK(q.size() == 3);
  q.pop();
  CHECK(q.push("d", 0, 0, t0).status == Queue::Status::kQueued);
}

TEST_CASE("flow queue: a higher priority displaces the newest lower-priority entries") {
  Queue::Limits l;
  l.max_requests = 3;
  l.max_bytes = 100;
  Queue q(l);
  q.push("s-old", -1, 30, t0);
  q.push("s-new", -1, 30, t0 + 1ms);
  q.push("std", 0, 30, t0 + 2ms);
  auto r = q.push("crit", 1, 30, t0 + 3ms);
  CHECK(r.status == Queue::Status::kQueued);
  REQUIRE(r.displaced.size() == 1);
  CHECK(r.displaced[0].value == "s-new");
  // Needs 60 bytes: displaces both remaining lower entries (the sheddable one first).
  r = q.push("crit2", 1, 60, t0 + 4ms);
  CHECK(r.status == Queue::Status::kQueued);
  REQUIRE(r.displaced.size() == 2);
  CHECK(r.displaced[0].value == "s-old");
  CHECK(r.displaced[1].value == "std");
  // Equal priority never displaces; nor when displacing everything lower is not enough.
  r = q.push("crit3", 1, 20, t0);
  CHECK(r.status == Queue::Status::kFull);
  CHECK(r.displaced.empty());
  CHECK(drain(q) == std::vector<std::string>{"crit", "crit2"});
}

TEST_CASE("flow queue: entries expire after the TTL, oldest first") {
  Queue::Limits l;
  l.ttl = 100ms;
  Queue q(l);
  CHECK_FALSE(q.next_deadline().has_value());
  q.push("a", 0, 1, t0);
  q.push("b", 1, 1, t0 + 30ms);
  q.push("c", 0, 1, t0 + 60ms);
  CHECK(q.next_deadline() == t0 + 100ms);
  std::vector<std::string> expired;
  auto on = [&](Queue::Entry&& e) { expired.push_back(e.value); };
  CHECK(q.expire(t0 + 99ms, on) == 0);
  CHECK(q.expire(t0 + 130ms, on) == 2);  // a (t0) and b (t0+30): both at or past 100 ms
  CHECK(expired == std::vector<std::string>{"b", "a"});
  CHECK(q.next_deadline() == t0 + 160ms);
  CHECK(q.size() == 1);
  CHECK(q.expire(t0 + 1s, on) == 1);
  CHECK(q.empty());
  CHECK_FALSE(q.next_deadline().has_value());
}

TEST_CASE("flow queue: removal by handle (client disconnect)") {
  Queue q;
  const auto a = q.push("a", 0, 5, t0).handle;
  const auto b = q.push("b", 0, 7, t0).handle;
  const auto c = q.push("c", 2, 9, t0).handle;
  CHECK(a != b);
  auto removed = q.remove(b);
  REQUIRE(removed.has_value());
  CHECK(removed->value == "b");
  CHECK(removed->bytes == 7);
  CHECK(q.bytes() == 14);
  CHECK_FALSE(q.remove(b).has_value());  // twice
  CHECK_FALSE(q.remove(0).has_value());  // never issued
  CHECK(q.pop()->handle == c);
  CHECK_FALSE(q.remove(c).has_value());  // already dispatched
  CHECK(q.remove(a)->value == "a");
  CHECK(q.empty());
}

TEST_CASE("flow queue: move-only payloads and no TTL") {
  FlowQueue<std::unique_ptr<int>>::Limits l;
  l.ttl = 0s;
  FlowQueue<std::unique_ptr<int>> q(l);
  q.push(std::make_unique<int>(7), 0, 1, t0);
  int seen = 0;
  CHECK(q.expire(t0 + 1000s, [&](auto&&) { ++seen; }) == 0);
  CHECK_FALSE(q.next_deadline().has_value());
  CHECK(*q.pop()->value == 7);
}
