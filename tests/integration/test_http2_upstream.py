#!/usr/bin/env python3
"""Upstream h2c (SPEC §4): a pool with appProtocol kubernetes.io/h2c is served over multiplexed
HTTP/2 sessions, by tests/integration/h2c_test_server.cpp (a minimal nghttp2 model server;
infergate-sim speaks HTTP/1.1 only). Clients reach the gateway over HTTP/1.1 and HTTP/2."""

import json
import os
import subprocess
import threading
import time

import harness
from harness import (GatewayTestCase, ManagedProcess, RefusingPort, completion, curl, endpoint,
                     inference_model, inference_pool, proxy_config, wait_until)
from test_http2 import RawH2, DATA, curl_h2, sse_data

H2C_SERVER = os.environ.get("INFERGATE_H2C_SERVER_BIN") or str(
    harness.REPO / "build/debug/tests/h2c_test_server")


class H2cServer(ManagedProcess):
    def __init__(self, *args: str):
        super().__init__("h2c-server", [H2C_SERVER, *args])
        m = self.wait_for_line(r"listening on (\S+):(\d+)", tag="out")
        self.port = int(m.group(2))
        self.address = f"127.0.0.1:{self.port}"

    def stats(self) -> dict:
        status, _, body, version = curl_h2(f"http://{self.address}/stats")
        if status != 200:
            raise AssertionError(f"h2c server /stats: {status} {version}")
        return json.loads(body)


def h2c_pool(name: str) -> dict:
    pool = inference_pool(name)
    pool["spec"]["appProtocol"] = "kubernetes.io/h2c"
    return pool


class H2cUpstreamTest(GatewayTestCase):
    def start(self, *server_args: str, extra_endpoints=(), limits=None):
        self.pod = H2cServer(*server_args)
        self._procs.append(self.pod)
        self.addCleanup(self.pod.stop)
        eps = [endpoint("h2-pod", self.pod.address)] + list(extra_endpoints)
        self.gw = self.gateway([
            proxy_config(eps, scrape=False, workers=1, limits=limits),
            h2c_pool("llama"),
            inference_model("alias", "llama", targets=[("real-model", 100)]),
        ])

    def test_json_and_streaming_over_h2c(self):
        self.start("--tokens", "4")
        res = curl(self.gw.url("/v1/completions"), body=completion("alias", max_tokens=2))
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "alias")  # rewritten back from real-model
        status, headers, body, version = curl_h2(
            self.gw.url("/v1/completions"), completion("alias", stream=True), args=["-N"])
        self.assertEqual((version, status), ("2", 200), body)
        data = sse_data(body)
        self.assertEqual(data[-1], "[DONE]")
        self.assertEqual([json.loads(d)["model"] for d in data[:-1]], ["alias"] * 4)
        # Sequential requests share one upstream connection.
        for _ in range(5):
            self.assertEqual(curl(self.gw.url("/v1/completions"),
                                  body=completion("alias")).status, 200)
        self.assertEqual(self.pod.stats()["connections"] - 1, 1)  # minus our /stats connection

    def test_the_pod_gets_the_same_forwarded_fields_as_an_http1_pod(self):
        # The fields a pod receives come from one rule for HTTP/1.1 and h2c upstreams:
        # hop-by-hop fields and those named by Connection dropped, x-request-id set,
        # x-forwarded-for appended to, x-forwarded-proto set, Content-Length of the rewritten body.
        self.start()
        body = json.dumps(completion("alias", max_tokens=2))
        res = curl(self.gw.url("/v1/completions"), body=body,
                   headers={"Connection": "x-private", "X-Private": "secret",
                            "X-Forwarded-For": "10.1.2.3", "X-Request-Id": "req-42",
                            "Keep-Alive": "timeout=5", "X-Custom": "kept"})
        self.assertEqual(res.status, 200, str(res))
        seen = self.pod.stats()["last_headers"]
        self.assertEqual(seen.get("x-custom"), "kept", seen)
        self.assertNotIn("x-private", seen)
        self.assertNotIn("keep-alive", seen)
        self.assertNotIn("connection", seen)
        self.assertEqual(seen.get("x-request-id"), "req-42", seen)
        self.assertEqual(seen.get("x-forwarded-for"), "10.1.2.3, 127.0.0.1", seen)
        self.assertEqual(seen.get("x-forwarded-proto"), "http", seen)
        # The model was rewritten (alias -> real-model), so the length is the new body's.
        sent = body.replace('"alias"', '"real-model"')
        self.assertEqual(seen.get("content-length"), str(len(sent)), seen)

    def test_streams_are_multiplexed_and_a_new_session_opens_at_the_stream_limit(self):
        # The pod allows 4 concurrent streams per connection and answers after 300 ms:
        # 10 concurrent requests need 3 sessions, each carrying up to 4 streams at once.
        self.start("--max-streams", "4", "--delay-ms", "300")
        results = []

        def one():
            results.append(curl(self.gw.url("/v1/completions"), body=completion("alias")).status)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [200] * 10)
        stats = self.pod.stats()
        self.assertEqual(stats["requests"], 10)
        self.assertEqual(stats["max_concurrent"], 4)
        # 10 streams at 4 per session need at least 3 sessions; streams that arrive while a new
        # session is still connecting may open one more, but they must never go one per
        # request (that would not be multiplexing).
        sessions = stats["connections"] - 1
        self.assertGreaterEqual(sessions, 3)
        self.assertLessEqual(sessions, 6)

    def test_client_reset_reaches_the_pod_as_a_stream_reset(self):
        self.start("--tokens", "1000", "--itl-ms", "20")
        h2 = self.resource(RawH2(self.gw.port))
        h2.request(1, "/v1/completions", completion("alias", stream=True))
        f = None
        while f is None or not (f[0] == DATA and f[2] == 1 and f[3]):
            f = h2.read_frame()
            self.assertIsNotNone(f)
        t0 = time.monotonic()
        h2.rst(1)
        wait_until(lambda: self.pod.stats()["aborted"] >= 1, timeout=1.0,
                   message="the pod to see the stream reset")
        self.assertLess(time.monotonic() - t0, 1.0)
        wait_until(lambda: self.gw.total_in_flight() == 0, message="in-flight back to 0")

    def test_connect_failure_is_retried_on_another_endpoint(self):
        dead = self.resource(RefusingPort())
        self.start(extra_endpoints=[endpoint("dead", dead.address)],
                   limits={"maxRetries": 2})
        for _ in range(6):
            res = curl(self.gw.url("/v1/completions"), body=completion("alias"))
            self.assertEqual(res.status, 200, str(res))
            self.assertEqual(res.json()["model"], "alias")


if __name__ == "__main__":
    harness.main()
