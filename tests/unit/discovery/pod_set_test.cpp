#include <doctest/doctest.h>

#include <string>

#include "discovery/pod_set.h"
#include "discovery/watch_events.h"

using namespace infergate::discovery;

namespace {

// A Pod object as the API returns it (the fields discovery reads, plus some it ignores).
std::string pod_json(const std::string& name, const std::string& rv, const std::string& ip,
                     bool ready, bool terminating = false, const std::string& extra_labels = "") {
  std::string s = R"({"kind":"Pod","apiVersion":"v1","metadata":{"name":")" + name +
                  R"(","namespace":"ml","uid":"uid-)" + name + R"(","resourceVersion":")" + rv +
                  R"(","labels":{"app":"llama")" + extra_labels + "}";
  if (terminating) s += R"(,"deletionTimestamp":"2025-01-01T00:00:00Z")";
  s += R"(},"spec":{"containers":[{"name":"vllm"}]},"status":{"phase":"Running")";
  if (!ip.empty()) s += R"(,"podIP":")" + ip + R"(")";
  s += R"(,"conditions":[{"type":"PodScheduled","status":"True"},{"type":"Ready","status":")";
  s += ready ? "True" : "False";
  s += R"("},{"type":"ContainersReady","status":"True"}]}})";
  return s;
}

std::string event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}";
}

WatchEvent parse(WatchParser& p, const std::string& line) {
  auto r = p.parse_event(line);
  REQUIRE_MESSAGE(r.value, r.error);
  return *r.value;
}

PodList list_of(WatchParser& p, const std::string& rv, const std::string& items) {
  auto r = p.parse_list(R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":")" +
                        rv + R"("},"items":[)" + items + "]}");
  REQUIRE_MESSAGE(r.value, r.error);
  return *r.value;
}

}  // namespace

TEST_CASE("parse a pod: readiness, IP, labels, deletionTimestamp") {
  WatchParser p;
  auto ev =
      parse(p, event("ADDED", pod_json("a", "10", "10.0.0.1", true, false,
                                       R"(,"inference.networking.k8s.io/engine-type":"sglang")")));
  CHECK(ev.type == WatchEventType::kAdded);
  CHECK(ev.pod.name == "a");
  CHECK(ev.pod.namespace_ == "ml");
  CHECK(ev.pod.resource_version == "10");
  CHECK(ev.pod.pod_ip == "10.0.0.1");
  CHECK(ev.pod.ready);
  CHECK_FALSE(ev.pod.terminating);
  CHECK(ev.pod.serving());
  CHECK(ev.pod.labels.at("inference.networking.k8s.io/engine-type") == "sglang");

  CHECK_FALSE(parse(p, event("MODIFIED", pod_json("a", "11", "10.0.0.1", false))).pod.serving());
  auto term = parse(p, event("MODIFIED", pod_json("a", "12", "10.0.0.1", true, true)));
  CHECK(term.pod.terminating);
  CHECK_FALSE(term.pod.serving());
  CHECK_FALSE(parse(p, event("ADDED", pod_json("b", "13", "", true))).pod.serving());  // no IP yet
  // deletionTimestamp: null is not terminating
  auto null_del = parse(
      p,
      R"({"type":"ADDED","object":{"metadata":{"name":"c","resourceVersion":"5","deletionTimestamp":null},"status":{"podIP":"10.0.0.3","conditions":[{"type":"Ready","status":"True"}]}}})");
  CHECK(null_del.pod.serving());
}

TEST_CASE("parse bookmark, error and bad lines") {
  WatchParser p;
  auto bm = parse(
      p,
      R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12746","annotations":{"k8s.io/initial-events-end":"true"}}}})");
  CHECK(bm.type == WatchEventType::kBookmark);
  CHECK(bm.pod.resource_version == "12746");

  auto err = parse(
      p,
      R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (2)","reason":"Expired","code":410}})j");
  CHECK(err.type == WatchEventType::kError);
  CHECK(err.error_code == 410);
  CHECK(err.error_reason == "Expired");

  CHECK_FALSE(p.parse_event("{not json").value);
  CHECK_FALSE(p.parse_event(R"({"type":"ADDED"})").value);
  CHECK_FALSE(p.parse_event(R"({"type":"WHAT","object":{"metadata":{}}})").value);
  CHECK_FALSE(p.parse_event(R"({"type":"BOOKMARK","object":{"metadata":{}}})").value);
  CHECK_FALSE(p.parse_list(R"({"kind":"PodList","items":[]})").value);  // no resourceVersion
  CHECK_FALSE(p.parse_list(R"({"kind":"ServiceList","metadata":{"resourceVersion":"1"}})").value);
  CHECK(p.status_code(R"({"kind":"Status","code":410,"reason":"Gone"})") == 410);
  CHECK(p.status_code("garbage") == 0);
}

TEST_CASE("pod set: endpoints are serving pods x target ports") {
  WatchParser p;
  PodSet set({"ml/llama", {8000, 8001}});
  CHECK(set.resource_version().empty());
  CHECK_FALSE(set.synced());
  bool changed = set.reset(list_of(p, "100",
                                   pod_json("a", "90", "10.0.0.1", true) + "," +
                                       pod_json("b", "91", "10.0.0.2", false) + "," +
                                       pod_json("c", "92", "10.0.0.3", true, true)));
  CHECK(changed);
  CHECK(set.synced());
  CHECK(set.resource_version() == "100");
  auto eps = set.endpoints();
  REQUIRE(eps.size() == 2);
  CHECK(eps[0].key == "ml/llama|a|10.0.0.1:8000");
  CHECK(eps[0].name == "a:8000");
  CHECK(eps[1].name == "a:8001");
  CHECK(eps[0].pool == "ml/llama");
  CHECK(eps[0].host == "10.0.0.1");
  CHECK(eps[1].port == 8001);
  CHECK(eps[0].labels.at("app") == "llama");

  // The same list again: nothing changed.
  CHECK_FALSE(set.reset(list_of(
      p, "101",
      pod_json("a", "90", "10.0.0.1", true) + "," + pod_json("b", "91", "10.0.0.2", false))));
  CHECK(set.resource_version() == "101");

  PodSet single({"ml/llama", {8000}});
  single.reset(list_of(p, "1", pod_json("a", "1", "10.0.0.1", true)));
  CHECK(single.endpoints().at(0).name == "a");
}

TEST_CASE("pod set: watch events and resourceVersion bookkeeping") {
  WatchParser p;
  PodSet set({"ml/llama", {8000}});
  set.reset(list_of(p, "100", ""));
  bool changed = true;

  CHECK(set.apply(parse(p, event("ADDED", pod_json("a", "101", "", false))), changed) ==
        WatchAction::kContinue);
  CHECK_FALSE(changed);  // not ready: no endpoint
  CHECK(set.resource_version() == "101");
  CHECK(set.pod_count() == 1);

  set.apply(parse(p, event("MODIFIED", pod_json("a", "102", "10.0.0.1", true))), changed);
  CHECK(changed);
  CHECK(set.endpoints().size() == 1);

  // A status change that keeps it serving (e.g. another condition) is not a change.
  set.apply(parse(p, event("MODIFIED", pod_json("a", "103", "10.0.0.1", true))), changed);
  CHECK_FALSE(changed);
  // A label change is.
  set.apply(
      parse(p, event("MODIFIED", pod_json("a", "104", "10.0.0.1", true, false,
                                          R"(,"inference.networking.k8s.io/engine-type":"vllm")"))),
      changed);
  CHECK(changed);

  // Bookmarks only move the resourceVersion.
  set.apply(
      parse(p,
            R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"200"}}})"),
      changed);
  CHECK_FALSE(changed);
  CHECK(set.resource_version() == "200");
  CHECK(set.endpoints().size() == 1);

  // Terminating: gone from the endpoints before the DELETED event.
  set.apply(parse(p, event("MODIFIED", pod_json("a", "201", "10.0.0.1", true, true))), changed);
  CHECK(changed);
  CHECK(set.endpoints().empty());
  set.apply(parse(p, event("DELETED", pod_json("a", "202", "10.0.0.1", true, true))), changed);
  CHECK_FALSE(changed);
  CHECK(set.pod_count() == 0);
  CHECK(set.resource_version() == "202");

  // Deleting a pod we never saw is harmless.
  set.apply(parse(p, event("DELETED", pod_json("zz", "203", "10.0.0.9", true))), changed);
  CHECK_FALSE(changed);
}

TEST_CASE("410 Gone: relist; other errors: reconnect from the kept version") {
  WatchParser p;
  PodSet set({"ml/llama", {8000}});
  set.reset(list_of(p, "100", pod_json("a", "90", "10.0.0.1", true)));
  bool changed = false;

  CHECK(
      set.apply(
          parse(
              p,
              R"({"type":"ERROR","object":{"kind":"Status","code":500,"reason":"InternalError"}})"),
          changed) == WatchAction::kReconnect);
  CHECK(set.resource_version() == "100");
  CHECK(set.on_watch_status(503) == WatchAction::kReconnect);
  CHECK(set.resource_version() == "100");
  CHECK(set.on_watch_status(200) == WatchAction::kContinue);

  CHECK(
      set.apply(
          parse(p, R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})"),
          changed) == WatchAction::kRelist);
  CHECK(set.resource_version().empty());
  // The endpoints stay until the new LIST replaces them.
  CHECK(set.endpoints().size() == 1);
  // The relist drops what disappeared meanwhile and adds what appeared.
  CHECK(set.reset(list_of(p, "300", pod_json("b", "250", "10.0.0.2", true))));
  REQUIRE(set.endpoints().size() == 1);
  CHECK(set.endpoints()[0].name == "b");
  CHECK(set.resource_version() == "300");

  CHECK(set.on_watch_status(410) == WatchAction::kRelist);
  CHECK(set.resource_version().empty());
}
