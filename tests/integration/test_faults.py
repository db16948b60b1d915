#!/usr/bin/env python3
"""Failures (SPEC §4, §9): retries before the first response byte, never after; an upstream
dying mid-stream; a client going away; the SIGTERM drain."""

import json
import signal
import socket
import time

import harness
from harness import (CurlStream, FakeUpstream, GatewayTestCase, RawConnection, RefusingPort, chat,
                     completion, curl, curl_stream, endpoint, inference_model, inference_pool,
                     proxy_config, request_bytes, wait_until)


def one_pool(endpoints, models=(("m", None),), **kw):
    docs = [proxy_config(endpoints, **kw), inference_pool("llama")]
    docs += [inference_model(name, "llama", targets=targets) for name, targets in models]
    return docs


class RetryTest(GatewayTestCase):
    """Scraping is off where an endpoint is not a model server: the scraper would (rightly) mark
    it unready and the picker would never try it, so the retry path would go untested."""

    def test_retry_past_a_refusing_endpoint(self):
        pod = self.sim(pod_name="live", served=["m"])
        dead = self.resource(RefusingPort())
        gw = self.gateway(one_pool([endpoint("dead", dead.address), endpoint("live", pod.address)],
                                   scrape=False))
        m0 = gw.metrics()
        for i in range(20):
            body = completion("m") if i % 2 else chat("m", stream=True)
            path = "/v1/completions" if i % 2 else "/v1/chat/completions"
            res = curl(gw.url(path), body=body)
            self.assertEqual(res.status, 200, str(res))
            self.assertEqual(res.headers.get("x-sim-pod"), "live")
        eps = gw.endpoints()
        self.assertGreaterEqual(eps["dead"]["failures_total"], 1,
                                "the picker never tried the dead endpoint (20 draws)")
        self.assertEqual(eps["live"]["failures_total"], 0)
        retries = gw.metrics().get("infergate_upstream_retries_total") - \
            m0.get("infergate_upstream_retries_total")
        self.assertEqual(retries, eps["dead"]["failures_total"])
        self.assertEqual(pod.stats()["requests_total"], 20)

    def test_retry_past_an_endpoint_that_resets(self):
        pod = self.sim(pod_name="live", served=["m"])
        bad = self.resource(FakeUpstream("reset"))
        gw = self.gateway(one_pool([endpoint("reset", bad.address), endpoint("live", pod.address)],
                                   scrape=False))
        for _ in range(12):
            res = curl(gw.url("/v1/completions"), body=completion("m"))
            self.assertEqual(res.status, 200, str(res))
        self.assertGreaterEqual(gw.endpoints()["reset"]["failures_total"], 1)
        self.assertGreaterEqual(bad.accepted, 1)

    def test_dead_endpoint_with_scraping_on_costs_no_client_errors(self):
        # The realistic set-up: the scraper sees the dead endpoint too. Whether the picker
        # avoids it or the retry goes past it, no client sees an error.
        pod = self.sim(pod_name="live", served=["m"])
        dead = self.resource(RefusingPort())
        gw = self.gateway(one_pool([endpoint("dead", dead.address), endpoint("live", pod.address)]))
        for _ in range(20):
            res = curl(gw.url("/v1/completions"), body=completion("m"))
            self.assertEqual(res.status, 200, str(res))
        self.assertEqual(pod.stats()["requests_total"], 20)

    def test_retries_are_bounded(self):
        # Four refusing endpoints and maxRetries 1: two attempts, then 502.
        dead = [self.resource(RefusingPort()) for _ in range(4)]
        gw = self.gateway(one_pool([endpoint(f"dead-{i}", d.address) for i, d in enumerate(dead)],
                                   limits={"maxRetries": 1}, scrape=False))
        res = curl(gw.url("/v1/completions"), body=completion("m"))
        self.assertOpenAIError(res, 502)
        self.assertEqual(sum(e["failures_total"] for e in gw.endpoints().values()), 2)
        self.assertEqual(gw.metrics().get("infergate_upstream_retries_total"), 1)

    def test_pod_that_stops_accepting(self):
        # --refuse-after 3: the pod closes its keep-alive connections and its listener after
        # three requests; the gateway must notice the stale connection and go elsewhere.
        flaky = self.sim("--refuse-after", "3", pod_name="flaky", served=["m"])
        steady = self.sim(pod_name="steady", served=["m"])
        gw = self.gateway(one_pool([endpoint("flaky", flaky.address),
                                    endpoint("steady", steady.address)]))
        pods = []
        for _ in range(16):
            res = curl(gw.url("/v1/completions"), body=completion("m"))
            self.assertEqual(res.status, 200, str(res))
            pods.append(res.headers.get("x-sim-pod"))
        self.assertLessEqual(pods.count("flaky"), 3, pods)
        self.assertEqual(pods[-4:], ["steady"] * 4, pods)


    def test_stale_upstream_connection_is_replaced(self):
        # The pod closes idle keep-alive connections after 0.2s (uvicorn does after 5s). A
        # request that finds its pooled connection closed goes on a fresh one: no error, no
        # failure counted, no retry on another endpoint.
        pod = self.sim("--keep-alive-timeout-s", "0.2", pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], workers=1))
        for _ in range(4):
            res = curl(gw.url("/v1/completions"), body=completion("m"))
            self.assertEqual(res.status, 200, str(res))
            time.sleep(0.4)  # the scenario: idle for longer than the pod's keep-alive timeout
        self.assertEqual(gw.endpoints()["p"]["failures_total"], 0)
        self.assertEqual(gw.metrics().get("infergate_upstream_retries_total"), 0)


    def test_pooled_connection_closed_by_the_pod_is_released_at_once(self):
        # An idle upstream connection that the pod closes is closed by the gateway too, right
        # away, rather than sitting in CLOSE_WAIT until a request finds it stale.
        pod = self.sim("--keep-alive-timeout-s", "0.2", pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], workers=1))
        res = curl(gw.url("/v1/completions"), body=completion("m"))
        self.assertEqual(res.status, 200, str(res))
        pod_port = int(pod.address.rsplit(":", 1)[1])

        def close_wait_to_pod():
            n = 0
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    remote_port = int(fields[2].split(":")[1], 16)
                    if remote_port == pod_port and fields[3] == "08":  # CLOSE_WAIT
                        n += 1
            return n

        time.sleep(0.5)  # the pod has closed its side by now
        wait_until(lambda: close_wait_to_pod() == 0, 1.0,
                   message="the gateway kept the closed upstream connection in CLOSE_WAIT")
        res = curl(gw.url("/v1/completions"), body=completion("m"))
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(gw.metrics().get("infergate_upstream_retries_total"), 0)


class MidStreamFailureTest(GatewayTestCase):

    def test_stalled_stream_is_cut_after_the_upstream_idle_timeout(self):
        # Tokens 3s apart, upstreamIdleTimeout 1s: the gateway gives up on the pod and the
        # client sees a truncated stream, not a hang and not a clean end.
        pod = self.sim("--ttft-ms", "1", "--itl-ms", "3000", "--output-tokens", "4",
                       pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)],
                                   limits={"upstreamIdleTimeout": "1s"}))
        res = curl_stream(gw.url("/v1/chat/completions"), chat("m", stream=True), timeout=20)
        self.assertEqual(res.status, 200, str(res))
        self.assertNotEqual(res.rc, 0, str(res))
        self.assertFalse(res.done())
        self.assertLess(res.elapsed, 2.9, "the stream was not cut after 1s of silence")
        wait_until(lambda: gw.total_in_flight() == 0, 2, message="in_flight back to 0")
        wait_until(lambda: pod.stats()["aborted_total"] == 1, 2,
                   message="the pod saw the request aborted")
        self.assertGreaterEqual(gw.metrics().get("infergate_upstream_errors_total",
                                                 reason="timeout"), 1)

    def test_stream_to_a_client_that_stops_reading_is_cut_after_the_idle_timeout(self):
        # The client asks for a long stream, then never reads: once the socket buffers are
        # full the gateway's writes block; after idleTimeout (the write timeout) of no progress
        # the exchange ends, the pod sees the abort and nothing stays in flight.
        pod = self.sim("--ttft-ms", "1", "--itl-ms", "0", "--output-tokens", "100000",
                       pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], workers=1,
                                   limits={"idleTimeout": "1s"}))
        body = json.dumps(chat("m", stream=True, max_tokens=100000, ignore_eos=True)).encode()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", gw.port))
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            started = time.monotonic()
            wait_until(lambda: pod.stats()["aborted_total"] == 1, 30,
                       message="the pod saw the stream aborted")
            self.assertLess(time.monotonic() - started, 25)
            wait_until(lambda: gw.total_in_flight() == 0, 2, message="in_flight back to 0")
            self.assertGreaterEqual(gw.metrics().get("infergate_client_aborts_total"), 1)
        finally:
            s.close()

    def test_idle_keepalive_connection_is_closed_after_the_idle_timeout(self):
        pod = self.sim(pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], workers=1,
                                   limits={"idleTimeout": "1s"}))
        body = json.dumps(completion("m")).encode()
        s = socket.create_connection(("127.0.0.1", gw.port))
        try:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            s.settimeout(5)
            first = s.recv(65536)
            self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:100])
            started = time.monotonic()
            while True:  # the rest of the response, then the close
                data = s.recv(65536)
                if not data:
                    break
            waited = time.monotonic() - started
            self.assertGreater(waited, 0.8, "closed before the idle timeout")
            self.assertLess(waited, 3.0, "not closed after the idle timeout (1s)")
        finally:
            s.close()

    def test_stream_cut_with_its_last_event_ends_at_once(self):
        # A chunked event stream whose server closes right after two events, the close in the
        # same segment as the data (TCP_CORK): no readiness event is left to report it. The
        # client must see the truncated stream within the close check's interval, not after
        # upstreamIdleTimeout (5s).
        events = (b'data: {"id":"1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n'
                  b'data: {"id":"1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n')
        response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + f"{len(events):x}\r\n".encode() + events + b"\r\n")  # no last chunk
        up = self.resource(FakeUpstream("script", response=response, cork=True))
        gw = self.gateway(one_pool([endpoint("fake", up.address)], scrape=False))
        res = curl_stream(gw.url("/v1/chat/completions"), chat("m", stream=True), timeout=20)
        self.assertEqual(res.status, 200, str(res))
        self.assertNotEqual(res.rc, 0, f"curl saw a complete response: {res}")
        self.assertFalse(res.done())
        self.assertEqual(len(res.data()), 2, str(res))
        self.assertLess(res.elapsed, 2.0, "the upstream's close was not noticed")

    def test_upstream_dying_mid_stream(self):
        # Both endpoints die after 3 events: the request must not be retried once bytes
        # reached the client (SPEC §4), so exactly one pod sees it.
        p1 = self.sim("--fail-mid-stream-after", "3", "--itl-ms", "20", "--output-tokens", "10",
                      pod_name="p1", served=["m"])
        p2 = self.sim("--fail-mid-stream-after", "3", "--itl-ms", "20", "--output-tokens", "10",
                      pod_name="p2", served=["m"])
        gw = self.gateway(one_pool([endpoint("p1", p1.address), endpoint("p2", p2.address)]))
        m0 = gw.metrics()
        res = curl_stream(gw.url("/v1/chat/completions"), chat("m", stream=True, max_tokens=10))
        self.assertEqual(res.status, 200, str(res))
        self.assertNotEqual(res.rc, 0, f"curl saw a complete response: {res}")
        self.assertIn(res.rc, (18, 56), str(res))  # partial file / failure receiving data
        self.assertFalse(res.done(), "a broken stream must not end with [DONE]")
        self.assertLessEqual(len(res.data()), 3, str(res))
        self.assertEqual(len(p1.v1_requests()) + len(p2.v1_requests()), 1,
                         "the request was retried after the first byte")
        # The gateway is fine: counters released, next requests served.
        wait_until(lambda: gw.total_in_flight() == 0, 3, message="in_flight back to 0")
        self.assertEqual(gw.admin("/healthz")[0], 200)
        for _ in range(3):
            ok = curl(gw.url("/v1/completions"), body=completion("m"))
            self.assertEqual(ok.status, 200, str(ok))
        m1 = gw.metrics()
        self.assertGreaterEqual(m1.get("infergate_upstream_errors_total", reason="reset")
                                - m0.get("infergate_upstream_errors_total", reason="reset"), 1)
        self.assertEqual(m1.get("infergate_upstream_retries_total"), 0)

    def test_mid_stream_failure_on_a_raw_connection_closes_it(self):
        # On HTTP/1.1 the only way to signal the truncation is to close without the final chunk.
        pod = self.sim("--fail-mid-stream-after", "2", pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)]))
        conn = self.resource(RawConnection(gw.port))
        conn.send(request_bytes("POST", "/v1/completions", completion("m", stream=True)))
        with self.assertRaises(ConnectionError):
            conn.read_response()
        self.assertEqual(curl(gw.url("/v1/completions"), body=completion("m")).status, 200)


class ClientDisconnectTest(GatewayTestCase):

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim("--ttft-ms", "10000", pod_name="slow", served=["m"])
        cls.gw = cls.class_gateway(one_pool([endpoint("slow", cls.pod.address)]))

    def check_abort_reaches_the_pod(self, body, path):
        before = self.pod.stats()
        aborts = self.gw.metrics().get("infergate_client_aborts_total")
        conn = RawConnection(self.gw.port)
        conn.send(request_bytes("POST", path, body))
        wait_until(lambda: self.pod.stats()["active"] == before["active"] + 1, 3,
                   message="the request reached the pod")
        self.assertEqual(self.gw.total_in_flight(), 1)
        time.sleep(0.3)  # the scenario: a client that gives up after 0.3s (not a sync point)
        conn.close()
        closed_at = time.monotonic()
        wait_until(lambda: self.pod.stats()["aborted_total"] == before["aborted_total"] + 1, 1.0,
                   message="the pod counted the abort within 1s")
        self.assertLess(time.monotonic() - closed_at, 1.0)
        wait_until(lambda: self.gw.total_in_flight() == 0, 1.0, message="in_flight back to 0")
        self.assertEqual(self.pod.stats()["active"], before["active"])
        wait_until(lambda: self.gw.metrics().get("infergate_client_aborts_total") == aborts + 1, 2,
                   message="infergate_client_aborts_total counted")

    def test_disconnect_aborts_a_non_streamed_request(self):
        self.check_abort_reaches_the_pod(completion("m"), "/v1/completions")

    def test_disconnect_aborts_a_streamed_request(self):
        self.check_abort_reaches_the_pod(chat("m", stream=True), "/v1/chat/completions")

    def test_reset_aborts_the_request(self):
        before = self.pod.stats()
        conn = RawConnection(self.gw.port)
        conn.send(request_bytes("POST", "/v1/completions", completion("m")))
        wait_until(lambda: self.pod.stats()["active"] == before["active"] + 1, 3,
                   message="the request reached the pod")
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # RST
        wait_until(lambda: self.pod.stats()["aborted_total"] == before["aborted_total"] + 1, 1.0,
                   message="the pod counted the abort within 1s")
        wait_until(lambda: self.gw.total_in_flight() == 0, 1.0, message="in_flight back to 0")

    def test_close_that_comes_with_the_request_aborts_it(self):
        # The request and the client's FIN in one segment (TCP_CORK, then shutdown), as the
        # second request of a keep-alive connection: the gateway reads the request and the
        # close together, with no later event to report the close. It must still give up
        # promptly: before the request reaches the pod, or by aborting it there (the pod would
        # otherwise work on it for 10s).
        before = self.pod.stats()
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # answered by the gateway
        self.assertEqual(conn.read_response().status, 200)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        conn.send(request_bytes("POST", "/v1/completions", completion("m")))
        conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        wait_until(lambda: self.pod.stats()["active"] == before["active"]
                   and self.gw.total_in_flight() == 0, 0.5,
                   message="the request given up within 1s")

    def test_curl_timeout_aborts_the_request(self):
        before = self.pod.stats()
        res = curl(self.gw.url("/v1/completions"), body=completion("m"), timeout=0.3)
        self.assertEqual(res.rc, 28, str(res))  # curl: operation timed out
        wait_until(lambda: self.pod.stats()["aborted_total"] == before["aborted_total"] + 1, 1.0,
                   message="the pod counted the abort within 1s")
        wait_until(lambda: self.gw.total_in_flight() == 0, 1.0, message="in_flight back to 0")


class ReloadTest(GatewayTestCase):

    def test_in_flight_request_finishes_on_the_old_snapshot(self):
        pod = self.sim("--itl-ms", "100", "--output-tokens", "10", pod_name="p",
                       served=["t1", "t2"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], models=(("m", [("t1", 1)]),)))
        stream = CurlStream(gw.url("/v1/chat/completions"), chat("m", stream=True, max_tokens=10))
        self.addCleanup(stream.kill)
        stream.wait_for_data(1, timeout=5)
        reloads = gw.metrics().get("infergate_config_reloads_total", result="success")
        gw.write_config(harness.render(one_pool([endpoint("p", pod.address)],
                                                models=(("m", [("t2", 1)]),))))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: gw.metrics().get("infergate_config_reloads_total", result="success")
                   == reloads + 1, 3, message="the reload")
        res = curl(gw.url("/v1/completions"), body=completion("m"))
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "m")
        done = stream.wait(20)
        self.assertEqual(done.rc, 0, str(done))
        self.assertTrue(done.done(), str(done))
        self.assertTrue(all(e["model"] == "m" for e in done.json_events()))
        seen = [json.loads(r["body"])["model"] for r in pod.v1_requests()]
        self.assertEqual(seen, ["t1", "t2"])
        wait_until(lambda: gw.total_in_flight() == 0, 2, message="in_flight back to 0")


class DrainTest(GatewayTestCase):

    def test_sigterm_finishes_the_in_flight_stream(self):
        pod = self.sim("--itl-ms", "150", "--output-tokens", "12", pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], limits={"drainTimeout": "10s"}))
        self.assertEqual(gw.admin("/readyz")[0], 200)
        stream = CurlStream(gw.url("/v1/chat/completions"), chat("m", stream=True, max_tokens=12))
        self.addCleanup(stream.kill)
        stream.wait_for_data(2, timeout=5)
        gw.expect_exit = True
        gw.signal(signal.SIGTERM)

        def not_ready():
            try:
                return gw.admin("/readyz")[0] == 503
            except OSError:
                return True  # the admin listener is gone: not ready either

        wait_until(not_ready, 2, message="/readyz 503 while draining")
        # New connections are no longer accepted (or are turned away).
        def refuses():
            try:
                res = curl(gw.url("/v1/completions"), body=completion("m"), timeout=2)
            except Exception:  # noqa: BLE001
                return True
            return res.rc == 7 or res.status == 503

        self.assertTrue(refuses(), "the listener still accepts requests while draining")
        res = stream.wait(20)
        self.assertEqual(res.rc, 0, str(res))
        self.assertTrue(res.done(), f"the stream was cut by the drain: {res}")
        events = res.json_events()
        self.assertIn(events[-1]["choices"][0]["finish_reason"], ("stop", "length"), events[-1])
        self.assertGreaterEqual(len(events), 12, str(res))
        self.assertEqual(gw.wait(10), 0, gw.log_tail())

    def test_drain_closes_idle_keepalive_connections(self):
        pod = self.sim(pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)]))
        conn = self.resource(RawConnection(gw.port))
        conn.send(request_bytes("POST", "/v1/completions", completion("m")))
        self.assertEqual(conn.read_response().status, 200)
        gw.expect_exit = True
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        self.assertTrue(conn.at_eof(5), "the idle connection was not closed by the drain")
        self.assertEqual(gw.wait(10), 0, gw.log_tail())
        self.assertLess(time.monotonic() - t0, 5)

    def test_drain_timeout_bounds_the_wait(self):
        pod = self.sim("--ttft-ms", "20000", pod_name="p", served=["m"])
        gw = self.gateway(one_pool([endpoint("p", pod.address)], limits={"drainTimeout": "1s"}))
        stream = CurlStream(gw.url("/v1/chat/completions"), chat("m", stream=True))
        self.addCleanup(stream.kill)
        wait_until(lambda: gw.total_in_flight() == 1, 3, message="the request in flight")
        gw.expect_exit = True
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        rc = gw.wait(10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, gw.log_tail())
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 4)
        res = stream.wait(10)
        self.assertFalse(res.done())


if __name__ == "__main__":
    harness.main()
