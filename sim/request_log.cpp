#include "sim/request_log.h"

#include "sim/json_text.h"

#include <algorithm>

namespace infergate::sim {

void RequestLog::add(RecordedRequest request) {
  if (request.body.size() > kMaxBodyBytes) request.body.resize(kMaxBodyBytes);
  if (entries_.size() == kCapacity) entries_.pop_front();
  entries_.push_back(std::move(request));
}

std::string RequestLog::to_json() const {
  std::string out = "{\"requests\":[";
  std::vector<std::pair<std::string_view, std::string>> merged;
  bool first = true;
  for (const RecordedRequest& r : entries_) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"method\":");
    append_json_string(out, r.method);
    out.append(",\"path\":");
    append_json_string(out, r.target);
    out.append(",\"headers\":{");
    merged.clear();
    for (const auto& [name, value] : r.headers) {
      const auto it = std::find_if(merged.begin(), merged.end(),
                                   [&](const auto& m) { return m.first == name; });
      if (it == merged.end()) {
        merged.emplace_back(name, value);
      } else {
        it->second.append(", ").append(value);
      }
    }
    for (size_t i = 0; i < merged.size(); ++i) {
      if (i != 0) out.push_back(',');
      append_json_string(out, merged[i].first);
      out.push_back(':');
      append_json_string(out, merged[i].second);
    }
    out.append("},\"body\":");
    append_json_string(out, r.body);
    out.push_back('}');
  }
  out.append("]}");
  return out;
}

}  // namespace infergate::sim
