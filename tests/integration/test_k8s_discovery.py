"""Kubernetes pod discovery (discovery/PodWatcher) against a STAND-IN API server.

No real Kubernetes API server can run on these machines. StandInApiServer below is a small
in-test HTTP/1.1 server that implements the parts of the documented list/watch protocol
(kubernetes.io, "API concepts: efficient detection of changes") the client relies on:
  - LIST  GET /api/v1/namespaces/NS/pods?labelSelector=k%3Dv  -> PodList + metadata.resourceVersion
  - WATCH ...&watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N
          -> 200, chunked, one JSON event per line (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR),
             replaying every change after RV; RV older than the kept history -> HTTP 410 Gone
             with a Status body (or, on request, an ERROR event with code 410 in the stream)
It is a stand-in, not a conformance test: it checks that the client follows the protocol
(resourceVersion bookkeeping, bookmarks, relist on 410, resuming after a dropped watch,
backoff), not that it copes with every behaviour of a real kube-apiserver.

The client under test is infergate-k8s-watch (discovery/k8s_watch_main.cpp), which runs one
PodWatcher and prints each endpoint list it reports as a JSON line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

WATCH_BIN = os.environ.get("INFERGATE_K8S_WATCH_BIN") or harness._binary(
    "INFERGATE_K8S_WATCH_BIN", ["build/debug/discovery/infergate-k8s-watch",
                                "build/release/discovery/infergate-k8s-watch"])
TOKEN = "stand-in-token"


def pod(name: str, ip: str | None, ready: bool, labels: dict | None = None,
        terminating: bool = False) -> dict:
    meta = {"name": name, "namespace": "ml", "uid": f"uid-{name}",
            "labels": {"app": "llama", **(labels or {})}}
    if terminating:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status = {"phase": "Running" if ready else "Pending",
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {}, "status": status}


def write_kubeconfig(path: Path, port: int) -> None:
    """A kubeconfig for the stand-in: plain HTTP on 127.0.0.1, bearer token, namespace ml."""
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: stand-in
contexts:
- name: stand-in
  context: {{cluster: stand-in, user: gateway, namespace: ml}}
clusters:
- name: stand-in
  cluster: {{server: "http://127.0.0.1:{port}"}}
users:
- name: gateway
  user: {{token: {TOKEN}}}
""")


class StandInApiServer:
    """The stand-in (see the module docstring). Thread-safe; the test mutates pods through
    add/modify/delete and steers open watches through drop/bookmark/expire."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.pods: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []  # (rv, type, object)
        self.oldest_rv = 100  # watches from an older version get 410 Gone
        self.requests: list[dict] = []  # {"path", "query", "auth", "time"}
        self.commands: list[str] = []  # for the open watch: "drop", "drop-mid-event", "bookmark", "error410"
        self.watch_statuses: list[int] = []  # status codes for the next watch requests
        self.active_watches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        with self.cond:
            self.commands.append("stop")
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- state changes (each gets a new resourceVersion, as etcd does)

    def _record(self, kind: str, obj: dict) -> None:
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.pods.pop(obj["metadata"]["name"], None)
        else:
            self.pods[obj["metadata"]["name"]] = obj
        self.history.append((self.rv, kind, obj))
        self.cond.notify_all()

    def add(self, p: dict) -> None:
        with self.cond:
            self._record("ADDED", p)

    def modify(self, p: dict) -> None:
        with self.cond:
            self._record("MODIFIED", p)

    def delete(self, name: str) -> None:
        with self.cond:
            self._record("DELETED", self.pods[name])

    def bump(self) -> int:
        """A change elsewhere in the cluster: the resourceVersion moves, no event for us."""
        with self.cond:
            self.rv += 1
            return self.rv

    def compact(self) -> None:
        """Forget the history (etcd compaction): older resourceVersions get 410."""
        with self.cond:
            self.oldest_rv = self.rv
            self.history.clear()

    def command(self, c: str) -> None:
        with self.cond:
            self.commands.append(c)
            self.cond.notify_all()

    def lists(self) -> list[dict]:
        with self.cond:
            return [r for r in self.requests if "watch" not in r["query"]]

    def watches(self) -> list[dict]:
        with self.cond:
            return [r for r in self.requests if "watch" in r["query"]]

    # ---- HTTP

    @staticmethod
    def _selected(obj: dict, selector: dict) -> bool:
        labels = obj["metadata"].get("labels", {})
        return all(labels.get(k) == v for k, v in selector.items())

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.cond:
            self.requests.append({"path": url.path, "query": query,
                                  "auth": h.headers.get("Authorization"), "time": time.monotonic()})
        if url.path != "/api/v1/namespaces/ml/pods":
            return self._send_json(h, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send_json(h, 401, {"kind": "Status", "code": 401})
        selector = dict(t.split("=", 1) for t in query.get("labelSelector", "").split(",") if t)
        if query.get("watch") not in ("1", "true"):
            with self.cond:
                items = [p for p in self.pods.values() if self._selected(p, selector)]
                body = {"kind": "PodList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self.rv)}, "items": items}
            return self._send_json(h, 200, body)
        self._watch(h, query, selector)

    def _send_json(self, h, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h, query: dict, selector: dict) -> None:
        with self.cond:
            forced = self.watch_statuses.pop(0) if self.watch_statuses else None
        if forced is not None:
            return self._send_json(h, forced, {"kind": "Status", "code": forced})
        rv = int(query.get("resourceVersion") or 0)
        with self.cond:
            too_old = rv < self.oldest_rv
        if too_old:
            return self._send_json(h, 410, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "Expired", "code": 410,
                                            "message": f"too old resource version: {rv}"})
        deadline = time.monotonic() + int(query.get("timeoutSeconds", "60"))
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        def line(obj: dict) -> bytes:
            return json.dumps(obj).encode() + b"\n"

        sent = rv
        with self.cond:
            self.active_watches += 1
            self.cond.notify_all()
        try:
            while True:
                with self.cond:
                    while (not self.commands and not any(r > sent for r, _, _ in self.history)
                           and time.monotonic() < deadline):
                        self.cond.wait(max(0.0, deadline - time.monotonic()))
                    events = [(r, t, o) for r, t, o in self.history if r > sent]
                    cmd = self.commands.pop(0) if self.commands and not events else None
                if events:
                    for r, t, o in events:
                        sent = r
                        if self._selected(o, selector):
                            chunk(line({"type": t, "object": o}))
                    continue
                if cmd == "bookmark":
                    with self.cond:
                        sent = self.rv
                    chunk(line({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(sent)}}}))
                    continue
                if cmd == "error410":
                    chunk(line({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Expired", "code": 410, "message": "too old resource version"}}))
                    break
                if cmd in ("drop", "drop-mid-event", "stop"):
                    if cmd == "drop-mid-event":
                        # Half of an event line, then the connection goes away.
                        chunk(b'{"type":"ADDED","object":{"kind":"Pod","metadata":{"na')
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if time.monotonic() >= deadline:
                    break
            h.wfile.write(b"0\r\n\r\n")  # the watch ends cleanly (timeoutSeconds or ERROR)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True
        finally:
            with self.cond:
                self.active_watches -= 1


class K8sDiscoveryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.api = StandInApiServer()
        self.kubeconfig = Path(self.tmp.name) / "kubeconfig"
        write_kubeconfig(self.kubeconfig, self.api.port)
        self.proc: harness.ManagedProcess | None = None

    def tearDown(self) -> None:
        try:
            if self.proc is not None:
                self.proc.stop()
                if self.proc.crashed() or self.proc.returncode not in (0, -15):
                    sys.stderr.write(self.proc.log_tail())
                    self.fail(f"watcher exited with {self.proc.returncode}")
        finally:
            self.api.close()
            self.tmp.cleanup()

    def start(self, *extra: str, timeout_s: int = 30) -> harness.ManagedProcess:
        argv = [WATCH_BIN, "--kubeconfig", str(self.kubeconfig), "--selector", "app=llama",
                "--pool", "llama", "--ports", "8000", "--debounce-ms", "20", "--backoff-ms", "50",
                "--watch-timeout-s", str(timeout_s), "--log-level", "debug", *extra]
        self.proc = harness.ManagedProcess("k8s-watch", argv)
        return self.proc

    def lists_printed(self) -> list[list[dict]]:
        return [json.loads(l)["endpoints"] for l in self.proc.stdout_text().splitlines() if l]

    def wait_endpoints(self, expected: dict[str, str], timeout: float = 10.0) -> list[dict]:
        """Waits until the last printed list has exactly these pod name -> IP pairs."""
        def check():
            lists = self.lists_printed()
            if lists and {e["name"]: e["host"] for e in lists[-1]} == expected:
                return lists[-1]
            return None
        try:
            return harness.wait_until(check, timeout, message=f"endpoints {expected}")
        except AssertionError:
            sys.stderr.write(self.proc.log_tail())
            raise

    def wait_watching(self, n: int = 1) -> None:
        harness.wait_until(lambda: len(self.api.watches()) >= n and self.api.active_watches > 0,
                           10, message=f"watch #{n} to be open")

    def test_list_then_watch_follows_readiness_and_deletion(self):
        self.api.add(pod("a", "10.0.0.1", True, {"inference.networking.k8s.io/engine-type": "vllm"}))
        self.api.add(pod("b", "10.0.0.2", False))
        self.api.add(pod("other", "10.0.0.9", True, {"app": "other"}))
        self.start()
        eps = self.wait_endpoints({"a": "10.0.0.1"})
        self.assertEqual(eps[0]["key"], "ml/llama|a|10.0.0.1:8000")
        self.assertEqual(eps[0]["port"], 8000)
        self.assertEqual(eps[0]["labels"]["inference.networking.k8s.io/engine-type"], "vllm")
        self.wait_watching()
        lst, watch = self.api.lists()[0], self.api.watches()[0]
        self.assertEqual(lst["query"]["labelSelector"], "app=llama")
        self.assertEqual(lst["auth"], f"Bearer {TOKEN}")
        self.assertEqual(watch["query"]["allowWatchBookmarks"], "true")
        self.assertEqual(watch["query"]["timeoutSeconds"], "30")
        self.assertEqual(watch["query"]["resourceVersion"], "103")  # the list's version

        self.api.add(pod("c", "10.0.0.3", True))
        self.wait_endpoints({"a": "10.0.0.1", "c": "10.0.0.3"})
        self.api.modify(pod("b", "10.0.0.2", True))  # becomes Ready
        self.wait_endpoints({"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"})
        self.api.modify(pod("a", "10.0.0.1", True, terminating=True))  # deletionTimestamp set
        self.wait_endpoints({"b": "10.0.0.2", "c": "10.0.0.3"})
        self.api.delete("a")
        self.api.delete("c")
        self.wait_endpoints({"b": "10.0.0.2"})
        self.assertEqual(len(self.api.lists()), 1, "no relist without a 410")

    def test_bookmark_then_dropped_watch_resumes_from_the_bookmark(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start()
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching()
        rv = self.api.bump()  # the cluster moves on without events for our selector
        self.api.command("bookmark")
        harness.wait_until(lambda: "bookmark" not in self.api.commands, 5, message="bookmark sent")
        # Let the client read the bookmark, then drop the watch in the middle of an event line.
        time.sleep(0.2)
        printed = len(self.lists_printed())
        self.api.command("drop-mid-event")
        self.wait_watching(2)
        self.assertEqual(self.api.watches()[1]["query"]["resourceVersion"], str(rv),
                         "the second watch must resume from the bookmark's resourceVersion")
        self.assertEqual(len(self.api.lists()), 1, "a dropped watch must not relist")
        # The event lost in the half-written line is replayed by the server from history.
        self.api.add(pod("b", "10.0.0.2", True))
        self.wait_endpoints({"a": "10.0.0.1", "b": "10.0.0.2"})
        self.assertEqual(len(self.lists_printed()), printed + 1, "one callback per change")

    def test_error_event_410_relists(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start()
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching()
        self.api.bump()
        self.api.compact()  # the client's resourceVersion is now older than the history
        self.api.command("error410")
        harness.wait_until(lambda: len(self.api.lists()) >= 2, 10, message="a relist")
        self.assertIn("relisting", self.proc.stderr_text())
        self.api.delete("a")
        self.api.add(pod("b", "10.0.0.2", True))
        self.wait_endpoints({"b": "10.0.0.2"})

    def test_http_410_on_watch_relists(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start()
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching()
        self.api.compact()
        self.api.delete("a")            # these changes are beyond the compacted history...
        self.api.add(pod("b", "10.0.0.2", True))
        self.api.compact()
        self.api.command("drop")        # ...and the reconnecting watch gets HTTP 410
        # The open watch may already have streamed the two events; either way the set converges.
        self.wait_endpoints({"b": "10.0.0.2"})
        self.api.add(pod("c", "10.0.0.3", True))
        self.wait_endpoints({"b": "10.0.0.2", "c": "10.0.0.3"})

    def test_http_410_forced_relists(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start()
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching()
        self.api.bump()
        self.api.compact()
        self.api.command("drop")
        harness.wait_until(lambda: len(self.api.lists()) >= 2, 10, message="a relist after 410")
        self.assertIn("HTTP 410 Gone: relisting", self.proc.stderr_text())
        self.wait_watching(2)

    def test_reconnects_with_backoff_after_errors(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start()
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching()
        self.api.watch_statuses = [503, 503, 503]
        self.api.command("drop")
        self.wait_watching(5)
        w = self.api.watches()
        gaps = [w[i + 1]["time"] - w[i]["time"] for i in range(1, 4)]
        # Backoff 50 ms doubling, jitter in [d/2, d]: >= 25, 50, 100 ms.
        self.assertGreaterEqual(gaps[0], 0.020)
        self.assertGreaterEqual(gaps[2], 0.090)
        self.assertEqual(w[4]["query"]["resourceVersion"], "101")
        self.api.add(pod("b", "10.0.0.2", True))
        self.wait_endpoints({"a": "10.0.0.1", "b": "10.0.0.2"})

    def test_watch_timeout_rewatches_without_relist(self):
        self.api.add(pod("a", "10.0.0.1", True))
        self.start(timeout_s=1)
        self.wait_endpoints({"a": "10.0.0.1"})
        self.wait_watching(3)  # the server ended two watches after timeoutSeconds
        self.assertEqual(len(self.api.lists()), 1)
        self.api.add(pod("b", "10.0.0.2", True))
        self.wait_endpoints({"a": "10.0.0.1", "b": "10.0.0.2"})

    def test_bad_token_is_reported(self):
        self.kubeconfig.write_text(self.kubeconfig.read_text().replace(TOKEN, "wrong"))
        self.start()
        self.proc.wait_for_line(r"HTTP 401", tag="err", timeout=10)


class GatewayKubernetesDiscoveryTest(harness.GatewayTestCase):
    """The gateway itself with spec.discovery.kubernetes: each InferencePool's endpoints follow
    the Ready pods of the (stand-in) API server; a request in flight to a pod that goes away
    completes."""

    def test_pool_endpoints_follow_ready_pods(self):
        api = self.resource(StandInApiServer())
        first = self.sim("--itl-ms", "20", pod_name="pod-a")
        port = first.port
        second = self.sim("--host", "127.0.0.2", "--port", str(port), "--itl-ms", "20",
                          pod_name="pod-b")
        kubeconfig = os.path.join(self.tmp(), "kubeconfig")
        write_kubeconfig(Path(kubeconfig), api.port)
        cfg = harness.proxy_config([], scheduler={"profile": "round-robin"})
        cfg["spec"]["discovery"] = {"kubernetes": {"enabled": True, "kubeconfig": kubeconfig}}
        pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
                "metadata": {"name": "llama", "namespace": "ml"},
                "spec": {"selector": {"matchLabels": {"app": "llama"}},
                         "targetPorts": [{"number": port}],
                         "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
        api.add(pod("llama-0", "127.0.0.1", ready=True))
        api.add(pod("llama-1", "127.0.0.2", ready=False))
        gw = self.gateway([cfg, pool])

        def names():
            return sorted(gw.endpoints().keys())

        harness.wait_until(lambda: names() == ["llama-0"], timeout=10, message="one ready pod")
        api.modify(pod("llama-1", "127.0.0.2", ready=True))
        harness.wait_until(lambda: names() == ["llama-0", "llama-1"], timeout=10,
                           message="second pod ready")
        served = set()
        for _ in range(6):
            r = harness.curl(gw.url("/v1/chat/completions"), harness.chat("test-model", max_tokens=1))
            self.assertEqual(r.status, 200, str(r))
            served.add(r.headers.get("x-sim-pod"))
        self.assertEqual(served, {"pod-a", "pod-b"})

        # A stream in flight to a pod that is deleted completes; new requests avoid the pod.
        stream = harness.CurlStream(gw.url("/v1/chat/completions"),
                                    harness.chat("test-model", stream=True, max_tokens=40,
                                                 ignore_eos=True))
        stream.wait_for_data(1, timeout=10)
        sims = {"llama-0": first, "llama-1": second}
        busy = harness.wait_until(lambda: [n for n, s in sims.items() if s.stats()["active"] == 1],
                                  timeout=10, message="the stream's pod")[0]
        api.delete(busy)
        harness.wait_until(lambda: names() == sorted(set(sims) - {busy}), timeout=10,
                           message="deleted pod removed")
        result = stream.wait(timeout=30)
        self.assertTrue(result.done, f"in-flight stream did not complete: {result}")
        self.assertEqual(sims[busy].stats()["aborted_total"], 0)
        for _ in range(4):
            r = harness.curl(gw.url("/v1/chat/completions"), harness.chat("test-model", max_tokens=1))
            self.assertEqual(r.status, 200, str(r))
            self.assertNotEqual(r.headers.get("x-sim-pod"), sims[busy].pod_name)


if __name__ == "__main__":
    if not os.access(WATCH_BIN, os.X_OK):
        sys.stderr.write(f"infergate-k8s-watch not found at {WATCH_BIN}\n")
        sys.exit(1)
    unittest.main()
