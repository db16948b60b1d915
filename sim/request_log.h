#pragma once
// What GET /sim/requests reports: the last kCapacity /v1/* requests as received, oldest first, so
// a gateway's tests can check what reached the model server (rewritten model, forwarded headers).
// Bodies are kept up to kMaxBodyBytes each to bound memory. Not thread-safe.

#include <cstddef>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace infergate::sim {

struct RecordedRequest {
  std::string method;
  std::string target;                                        // path and query as received
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased, in order
  std::string body;
};

class RequestLog {
 public:
  static constexpr size_t kCapacity = 200;
  static constexpr size_t kMaxBodyBytes = 1 << 20;

  void add(RecordedRequest request);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

  // {"requests":[{"method":..,"path":..,"headers":{name: value},"body":..}, ...]}; a header
  // repeated in a request is reported once, its values joined with ", ".
  std::string to_json() const;

 private:
  std::deque<RecordedRequest> entries_;
};

}  // namespace infergate::sim
