#include "discovery/watch_events.h"

#include <fmt/format.h>
#include <simdjson.h>

namespace infergate::discovery {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

std::string get_string(element obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) == simdjson::SUCCESS) return std::string(v);
  return {};
}

// Fills `out` from a Pod object; false with `error` on a shape that is not a pod.
bool read_pod(element pod, PodInfo& out, std::string& error) {
  element meta;
  if (pod["metadata"].get(meta) != simdjson::SUCCESS || !meta.is_object()) {
    error = "object has no metadata";
    return false;
  }
  out.name = get_string(meta, "name");
  out.namespace_ = get_string(meta, "namespace");
  out.uid = get_string(meta, "uid");
  out.resource_version = get_string(meta, "resourceVersion");
  element deletion;
  out.terminating =
      meta["deletionTimestamp"].get(deletion) == simdjson::SUCCESS && !deletion.is_null();
  object labels;
  if (meta["labels"].get_object().get(labels) == simdjson::SUCCESS) {
    for (auto field : labels) {
      std::string_view v;
      if (field.value.get_string().get(v) == simdjson::SUCCESS)
        out.labels.emplace(std::string(field.key), std::string(v));
    }
  }
  element status;
  if (pod["status"].get(status) == simdjson::SUCCESS && status.is_object()) {
    out.pod_ip = get_string(status, "podIP");
    simdjson::dom::array conditions;
    if (status["conditions"].get_array().get(conditions) == simdjson::SUCCESS) {
      for (element c : conditions) {
        if (get_string(c, "type") == "Ready") out.ready = get_string(c, "status") == "True";
      }
    }
  }
  return true;
}

}  // namespace

struct WatchParser::Impl {
  simdjson::dom::parser parser;
  simdjson::padded_string scratch;
};

WatchParser::WatchParser() : impl_(std::make_unique<Impl>()) {}
WatchParser::~WatchParser() = default;

ParseResult<PodList> WatchParser::parse_list(std::string_view body) {
  ParseResult<PodList> r;
  element doc;
  impl_->scratch = simdjson::padded_string(body);
  if (auto err = impl_->parser.parse(impl_->scratch).get(doc); err) {
    r.error = fmt::format("invalid JSON: {}", simdjson::error_message(err));
    return r;
  }
  if (!doc.is_object()) {
    r.error = "not an object";
    return r;
  }
  const std::string kind = get_string(doc, "kind");
  if (kind != "PodList") {
    r.error = fmt::format("expected kind PodList, got \"{}\"", kind);
    return r;
  }
  PodList list;
  element meta;
  if (doc["metadata"].get(meta) == simdjson::SUCCESS && meta.is_object())
    list.resource_version = get_string(meta, "resourceVersion");
  if (list.resource_version.empty()) {
    r.error = "PodList has no metadata.resourceVersion";
    return r;
  }
  simdjson::dom::array items;
  if (doc["items"].get_array().get(items) == simdjson::SUCCESS) {
    for (element item : items) {
      PodInfo pod;
      if (!read_pod(item, pod, r.error)) return r;
      list.pods.push_back(std::move(pod));
    }
  }
  r.value = std::move(list);
  return r;
}

ParseResult<WatchEvent> WatchParser::parse_event(std::string_view line) {
  ParseResult<WatchEvent> r;
  element doc;
  impl_->scratch = simdjson::padded_string(line);
  if (auto err = impl_->parser.parse(impl_->scratch).get(doc); err) {
    r.error = fmt::format("invalid JSON: {}", simdjson::error_message(err));
    return r;
  }
  element object_el;
  if (!doc.is_object() || doc["object"].get(object_el) != simdjson::SUCCESS ||
      !object_el.is_object()) {
    r.error = "watch event without an object";
    return r;
  }
  const std::string type = get_string(doc, "type");
  WatchEvent ev;
  if (type == "ADDED") {
    ev.type = WatchEventType::kAdded;
  } else if (type == "MODIFIED") {
    ev.type = WatchEventType::kModified;
  } else if (type == "DELETED") {
    ev.type = WatchEventType::kDeleted;
  } else if (type == "BOOKMARK") {
    ev.type = WatchEventType::kBookmark;
  } else if (type == "ERROR") {
    ev.type = WatchEventType::kError;
    int64_t code = 0;
    if (object_el["code"].get_int64().get(code) == simdjson::SUCCESS)
      ev.error_code = static_cast<int>(code);
    ev.error_reason = get_string(object_el, "reason");
    ev.error_message = get_string(object_el, "message");
    r.value = std::move(ev);
    return r;
  } else {
    r.error = fmt::format("unknown watch event type \"{}\"", type);
    return r;
  }
  if (!read_pod(object_el, ev.pod, r.error)) return r;
  if (ev.type == WatchEventType::kBookmark && ev.pod.resource_version.empty()) {
    r.error = "BOOKMARK without metadata.resourceVersion";
    return r;
  }
  r.value = std::move(ev);
  return r;
}

int WatchParser::status_code(std::string_view body) {
  element doc;
  impl_->scratch = simdjson::padded_string(body);
  if (impl_->parser.parse(impl_->scratch).get(doc) != simdjson::SUCCESS) return 0;
  int64_t code = 0;
  if (doc.is_object() && doc["code"].get_int64().get(code) == simdjson::SUCCESS)
    return static_cast<int>(code);
  return 0;
}

}  // namespace infergate::discovery
