#pragma once
// The flow-control queue (issue 4 §3): requests held while their pool is saturated, released
// as capacity frees. Strict priority (higher first), first come first served within a
// priority, bounded in count and in bytes, with a time to live. Removal by handle (the client
// went away). A higher-priority arrival may displace the newest entries of lower priorities
// when the queue is full (they are answered 429), so sheddable traffic can never lock critical
// traffic out of the queue.
//
// A data structure, sans-I/O: the caller supplies `now` and drives it with its own timers
// (next_deadline() says when the next entry expires). Not thread-safe: one owner thread (or
// the owner's own synchronisation). `T` is whatever the caller needs to wake the waiting
// request (a channel, a timer pointer, a coroutine handle, ...); it is moved in and out.

#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace infergate::routing {

template <class T>
class FlowQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using Handle = uint64_t;  // 0 is never issued

  struct Limits {
    size_t max_requests = 1000;
    uint64_t max_bytes = 64ull << 20;
    std::chrono::nanoseconds ttl = std::chrono::seconds(30);  // <= 0: no expiry
    bool displace_lower_priority = true;
  };

  struct Entry {
    Handle handle = 0;
    int priority = 0;
    uint64_t bytes = 0;
    TimePoint enqueued{};
    T value;
  };

  enum class Status {
    kQueued,
    kFull,      // no room, even after displacing every lower priority: 429
    kTooLarge,  // bytes alone exceed max_bytes: 429 (it could never fit)
  };

  struct PushResult {
    Status status = Status::kFull;
    Handle handle = 0;             // when kQueued
    std::vector<Entry> displaced;  // lower-priority entries pushed out (answer them 429)
  };

  explicit FlowQueue(Limits limits = {}) : limits_(limits) {}

  PushResult push(T value, int priority, uint64_t bytes, TimePoint now) {
    PushResult r;
    if (bytes > limits_.max_bytes || limits_.max_requests == 0) {
      r.status = Status::kTooLarge;
      return r;
    }
    if (!fits(bytes)) {
      if (!limits_.displace_lower_priority || !make_room(priority, bytes, r.displaced)) {
        r.status = Status::kFull;
        return r;
      }
    }
    Band& band = bands_[priority];
    const Handle h = next_handle_++;
    band.entries.push_back(Entry{h, priority, bytes, now, std::move(value)});
    band.bytes += bytes;
    where_.emplace(h, Location{priority, std::prev(band.entries.end())});
    ++size_;
    bytes_ += bytes;
    r.status = Status::kQueued;
    r.handle = h;
    return r;
  }

  // The client went away (or gave up): takes the entry out. nullopt when it is no longer queued
  // (popped, expired, displaced or never issued).
  std::optional<Entry> remove(Handle h) {
    const auto it = where_.find(h);
    if (it == where_.end()) return std::nullopt;
    const Location loc = it->second;
    where_.erase(it);
    auto band = bands_.find(loc.priority);
    return take(band, loc.entry);
  }

  // The next request to dispatch: highest priority, oldest first. Does not look at TTLs: call
  // expire() first when entries may have outlived it.
  std::optional<Entry> pop() {
    if (bands_.empty()) return std::nullopt;
    auto band = bands_.begin();
    where_.erase(band->second.entries.front().handle);
    return take(band, band->second.entries.begin());
  }

  const Entry* peek() const {
    return bands_.empty() ? nullptr : &bands_.begin()->second.entries.front();
  }

  // Removes every entry queued at or before now - ttl, passing each to on_expired (answer 503).
  // Returns how many.
  template <class OnExpired>
  size_t expire(TimePoint now, OnExpired&& on_expired) {
    if (limits_.ttl <= std::chrono::nanoseconds::zero()) return 0;
    size_t n = 0;
    for (auto band = bands_.begin(); band != bands_.end();) {
      auto next = std::next(band);
      // Within a band entries are in arrival order, so the expired ones are a prefix.
      while (band != bands_.end() && !band->second.entries.empty() &&
             band->second.entries.front().enqueued + limits_.ttl <= now) {
        where_.erase(band->second.entries.front().handle);
        const bool last = band->second.entries.size() == 1;
        on_expired(*take(band, band->second.entries.begin()));
        ++n;
        if (last) break;  // take() erased the band
      }
      band = next;
    }
    return n;
  }

  // When the oldest entry expires; nullopt when empty or without TTL.
  std::optional<TimePoint> next_deadline() const {
    if (limits_.ttl <= std::chrono::nanoseconds::zero() || bands_.empty()) return std::nullopt;
    std::optional<TimePoint> d;
    for (const auto& [priority, band] : bands_) {
      const TimePoint t = band.entries.front().enqueued + limits_.ttl;
      if (!d || t < *d) d = t;
    }
    return d;
  }

  size_t size() const { return size_; }
  uint64_t bytes() const { return bytes_; }
  bool empty() const { return size_ == 0; }
  const Limits& limits() const { return limits_; }

 private:
  struct Band {
    std::list<Entry> entries;  // arrival order
    uint64_t bytes = 0;
  };
  using Bands = std::map<int, Band, std::greater<int>>;  // highest priority first
  struct Location {
    int priority;
    typename std::list<Entry>::iterator entry;
  };

  bool fits(uint64_t bytes) const {
    return size_ + 1 <= limits_.max_requests && bytes_ + bytes <= limits_.max_bytes;
  }

  // Erases the entry (already gone from where_) and its band when it empties.
  std::optional<Entry> take(typename Bands::iterator band,
                            typename std::list<Entry>::iterator entry) {
    Entry e = std::move(*entry);
    band->second.entries.erase(entry);
    band->second.bytes -= e.bytes;
    --size_;
    bytes_ -= e.bytes;
    if (band->second.entries.empty()) bands_.erase(band);
    return e;
  }

  // Displaces the newest entries of the lowest priorities below `priority` until an entry of
  // `bytes` fits. Displaces nothing when even displacing them all would not make room.
  bool make_room(int priority, uint64_t bytes, std::vector<Entry>& displaced) {
    size_t lower_count = 0;
    uint64_t lower_bytes = 0;
    for (auto it = bands_.upper_bound(priority); it != bands_.end(); ++it) {
      lower_count += it->second.entries.size();
      lower_bytes += it->second.bytes;
    }
    if (size_ - lower_count + 1 > limits_.max_requests ||
        bytes_ - lower_bytes + bytes > limits_.max_bytes)
      return false;
    while (!fits(bytes)) {
      auto lowest = std::prev(bands_.end());
      auto newest = std::prev(lowest->second.entries.end());
      where_.erase(newest->handle);
      displaced.push_back(*take(lowest, newest));
    }
    return true;
  }

  Limits limits_;
  Bands bands_;
  std::unordered_map<Handle, Location> where_;
  size_t size_ = 0;
  uint64_t bytes_ = 0;
  Handle next_handle_ = 1;
};

}  // namespace infergate::routing
