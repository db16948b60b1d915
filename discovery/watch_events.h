#pragma once
// Sans-I/O parsing of what the Kubernetes API returns for pods: a PodList (LIST) and the
// newline-delimited watch events (WATCH), as documented in "Kubernetes API concepts: efficient
// detection of changes". Only the fields discovery needs are kept. Not thread-safe (one parser
// per watcher); no exceptions: errors come back in the result.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::discovery {

// The part of a Pod that decides whether and where it serves.
struct PodInfo {
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  std::map<std::string, std::string> labels;
  std::string pod_ip;        // status.podIP, "" until scheduled and networked
  bool ready = false;        // status.conditions[type=Ready].status == "True"
  bool terminating = false;  // metadata.deletionTimestamp is set

  // Whether traffic may go to it: Ready, not terminating, with an IP.
  bool serving() const { return ready && !terminating && !pod_ip.empty(); }
};

struct PodList {
  std::string resource_version;  // metadata.resourceVersion of the list
  std::vector<PodInfo> pods;
};

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

struct WatchEvent {
  WatchEventType type = WatchEventType::kError;
  PodInfo pod;                // kAdded/kModified/kDeleted; kBookmark: resource_version only
  int error_code = 0;         // kError: the Status object's code (410: history expired)
  std::string error_reason;   // kError: reason ("Expired", "Gone", ...)
  std::string error_message;  // kError: message
};

template <typename T>
struct ParseResult {
  std::optional<T> value;
  std::string error;  // set when value is empty
};

class WatchParser {
 public:
  WatchParser();
  ~WatchParser();
  WatchParser(const WatchParser&) = delete;
  WatchParser& operator=(const WatchParser&) = delete;

  // A LIST response body (kind PodList).
  ParseResult<PodList> parse_list(std::string_view body);
  // One line of a watch stream: {"type": "...", "object": {...}}.
  ParseResult<WatchEvent> parse_event(std::string_view line);
  // A Status body (e.g. the body of an HTTP 410): its code, or 0.
  int status_code(std::string_view body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergate::discovery
