#!/usr/bin/env python3
"""SPEC §5: every error the gateway produces itself carries OpenAI's envelope
{"error": {"message", "type", "param", "code"}} with content-type application/json, and the
status of its row; errors a pod returns pass through unchanged."""

import json
import time

import harness
from harness import (FakeUpstream, GatewayTestCase, RawConnection, RefusingPort, chat, completion,
                     curl, endpoint, inference_model, inference_pool, proxy_config, request_bytes,
                     wait_until)

BODY_LIMIT = 4096
HEADER_LIMIT = 2048


class GatewayErrorsTest(GatewayTestCase):

    @classmethod
    def start_class_fixtures(cls):
        cls.good = cls.class_sim(pod_name="good-pod", served=["good"])
        cls.slow = cls.class_sim("--ttft-ms", "3000", pod_name="slow-pod", served=["slow"])
        cls.flaky = cls.class_sim("--error-rate", "1", "--error-status", "500",
                                  pod_name="flaky-pod", served=["flaky"])
        cls.refused = [cls.class_resource(RefusingPort()) for _ in range(2)]
        cls.resetting = cls.class_resource(FakeUpstream("reset"))
        cls.garbage = cls.class_resource(FakeUpstream("garbage"))
        endpoints = [
            endpoint("good-pod", cls.good.address, app="good"),
            endpoint("slow-pod", cls.slow.address, app="slow"),
            endpoint("flaky-pod", cls.flaky.address, app="flaky"),
            endpoint("dead-0", cls.refused[0].address, app="dead"),
            endpoint("dead-1", cls.refused[1].address, app="dead"),
            endpoint("reset-pod", cls.resetting.address, app="reset"),
            endpoint("garbage-pod", cls.garbage.address, app="garbage"),
        ]
        limits = {"headerTimeout": "500ms", "bodyTimeout": "500ms",
                  "upstreamResponseTimeout": "1s", "maxRequestBodyBytes": BODY_LIMIT,
                  "maxRequestHeaderBytes": HEADER_LIMIT, "maxRetries": 2}
        # No metrics scraping: the dead/reset/garbage pools must be judged by the data path
        # (502 after retries), not filtered out as unready (which would be a 503).
        docs = [proxy_config(endpoints, limits=limits, scrape=False)]
        for pool in ("good", "slow", "flaky", "dead", "reset", "garbage", "empty"):
            docs.append(inference_pool(pool))
            docs.append(inference_model(pool, pool))
        docs.append(inference_model("ghost", "good"))  # routed, but the pod does not serve it
        cls.gw = cls.class_gateway(docs)

    def post(self, path, body, **kw):
        return curl(self.gw.url(path), body=body, **kw)

    def good_pod_requests(self):
        return len(self.good.v1_requests())

    # ---- 400

    def test_400_body_not_json(self):
        before = self.good_pod_requests()
        for body in (b"not json{", b"", b'{"model": "good", "prompt": "x"', b"\xff\xfe"):
            with self.subTest(body=body):
                res = self.post("/v1/completions", body)
                self.assertOpenAIError(res, 400, type_="invalid_request_error")
        self.assertEqual(self.good_pod_requests(), before, "a bad request reached the pod")

    def test_400_body_not_an_object(self):
        for body in (b"[1, 2]", b'"good"', b"42", b"null", b"true"):
            with self.subTest(body=body):
                res = self.post("/v1/chat/completions", body)
                self.assertOpenAIError(res, 400, type_="invalid_request_error")

    def test_400_model_missing_or_not_a_string(self):
        bodies = [{"prompt": "hi"}, {"model": 5, "prompt": "hi"}, {"model": None, "prompt": "hi"},
                  {"model": ["good"], "prompt": "hi"}, {"model": {"name": "good"}, "prompt": "hi"}]
        before = self.good_pod_requests()
        for body in bodies:
            with self.subTest(body=body):
                res = self.post("/v1/completions", body)
                err = self.assertOpenAIError(res, 400, type_="invalid_request_error")
                self.assertIn("model", err["message"] + str(err["param"]))
        self.assertEqual(self.good_pod_requests(), before, "a bad request reached the pod")

    def test_400_required_field_missing(self):
        cases = [("/v1/completions", "prompt", {"model": "good", "max_tokens": 2}),
                 ("/v1/chat/completions", "messages", {"model": "good"}),
                 ("/v1/embeddings", "input", {"model": "good"})]
        before = self.good_pod_requests()
        for path, field, body in cases:
            with self.subTest(path=path):
                res = self.post(path, body)
                err = self.assertOpenAIError(res, 400, type_="invalid_request_error")
                self.assertIn(field, err["message"] + str(err["param"]))
        self.assertEqual(self.good_pod_requests(), before, "a bad request reached the pod")

    def test_error_keeps_the_connection_usable(self):
        # A 400/404/405 is an answer like any other: the keep-alive connection carries on.
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(request_bytes("POST", "/v1/completions", b"{oops"))
        self.assertOpenAIError(conn.read_response(), 400)
        conn.send(request_bytes("GET", "/v1/chat/completions"))
        self.assertOpenAIError(conn.read_response(), 405)
        conn.send(request_bytes("POST", "/v1/completions", completion("nope")))
        self.assertOpenAIError(conn.read_response(), 404, code="model_not_found")
        conn.send(request_bytes("POST", "/v1/completions", completion("good")))
        res = conn.read_response()
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "good")

    # ---- 404

    def test_404_model_not_found_with_several_pools(self):
        before = self.gw.metrics().get("inference_objective_request_error_total",
                                       error_code="model_not_found")
        res = self.post("/v1/chat/completions", chat("no-such-model"))
        err = self.assertOpenAIError(res, 404, code="model_not_found")
        self.assertIn("no-such-model", err["message"])
        wait_until(lambda: self.gw.metrics().get("inference_objective_request_error_total",
                                                 error_code="model_not_found") == before + 1,
                   3, message="inference_objective_request_error_total{error_code=model_not_found}")

    def test_404_unknown_path(self):
        for method, path, body in (("GET", "/nope", None), ("GET", "/v2/completions", None),
                                   ("POST", "/v1/unknown", {"prompt": "no model here"}),
                                   ("POST", "/", b"not json"), ("DELETE", "/x", None)):
            with self.subTest(method=method, path=path):
                res = curl(self.gw.url(path), body=body, method=method)
                self.assertOpenAIError(res, 404, code="not_found")

    # ---- 405

    def test_405_wrong_method_on_known_path(self):
        for method, path in (("GET", "/v1/chat/completions"), ("GET", "/v1/completions"),
                             ("DELETE", "/v1/embeddings"), ("PUT", "/v1/chat/completions")):
            with self.subTest(method=method, path=path):
                res = curl(self.gw.url(path), method=method)
                self.assertOpenAIError(res, 405)
                self.assertIn("POST", res.headers.get("allow", ""))
        res = self.post("/v1/models", {"model": "good"})
        self.assertOpenAIError(res, 405)
        self.assertIn("GET", res.headers.get("allow", ""), str(res))

    # ---- 408

    def test_408_headers_too_slow(self):
        conn = self.resource(RawConnection(self.gw.port))
        t0 = time.monotonic()
        conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        res = conn.read_response()
        elapsed = time.monotonic() - t0
        self.assertOpenAIError(res, 408)
        self.assertLess(elapsed, 3.0, "the header timeout is 500ms")
        self.assertTrue(conn.at_eof(), "the connection stays open after a 408")

    def test_408_body_too_slow(self):
        conn = self.resource(RawConnection(self.gw.port))
        t0 = time.monotonic()
        conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\": \"good\",")
        res = conn.read_response()
        elapsed = time.monotonic() - t0
        self.assertOpenAIError(res, 408)
        self.assertLess(elapsed, 3.0, "the body timeout is 500ms")
        self.assertTrue(conn.at_eof(), "the connection stays open after a 408")

    def test_idle_keepalive_connection_is_not_a_408(self):
        # Between requests the idle timeout applies, not the header timeout: a client that
        # waits longer than headerTimeout before its next request is served normally.
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(request_bytes("POST", "/v1/completions", completion("good")))
        self.assertEqual(conn.read_response().status, 200)
        conn.sock.settimeout(0.8)  # > headerTimeout (500ms)
        try:
            data = conn.sock.recv(1)
            self.fail(f"the gateway sent {data!r} on an idle keep-alive connection")
        except TimeoutError:
            pass
        conn.sock.settimeout(10)
        conn.send(request_bytes("POST", "/v1/completions", completion("good")))
        self.assertEqual(conn.read_response().status, 200)

    # ---- 413

    def test_413_content_length_over_limit(self):
        body = json.dumps(completion("good", prompt="x" * (BODY_LIMIT * 2)))
        res = self.post("/v1/completions", body)
        self.assertOpenAIError(res, 413)

    def test_413_announced_content_length_answered_before_the_body(self):
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")
        self.assertOpenAIError(conn.read_response(), 413)

    def test_413_chunked_over_limit(self):
        body = json.dumps(completion("good", prompt="x" * (BODY_LIMIT * 2)))
        res = self.post("/v1/completions", body, headers={"Transfer-Encoding": "chunked"})
        self.assertOpenAIError(res, 413)

    def test_413_reaches_a_client_still_uploading(self):
        # 4 MiB: far more than the socket buffers hold, so the answer comes mid-upload.
        body = json.dumps(completion("good", prompt="z" * (4 << 20)))
        for headers in ({"Expect": None}, {"Transfer-Encoding": "chunked", "Expect": None}):
            with self.subTest(headers=headers):
                res = self.post("/v1/completions", body, headers=headers)
                self.assertOpenAIError(res, 413)

    def test_body_just_under_the_limit_passes(self):
        body = completion("good", prompt="")
        overhead = len(json.dumps(body))
        body["prompt"] = "y" * (BODY_LIMIT - overhead - 16)
        res = self.post("/v1/completions", body, headers={"Transfer-Encoding": "chunked"})
        self.assertEqual(res.status, 200, str(res))

    # ---- 431

    def test_431_headers_too_large(self):
        res = self.post("/v1/completions", completion("good"),
                        headers={"X-Big": "a" * (HEADER_LIMIT * 2)})
        self.assertOpenAIError(res, 431)

    # ---- 502

    def test_502_all_endpoints_refuse(self):
        m0 = self.gw.metrics()
        res = self.post("/v1/completions", completion("dead"))
        self.assertOpenAIError(res, 502)
        m1 = self.gw.metrics()
        self.assertGreaterEqual(m1.get("infergate_upstream_errors_total", reason="connect")
                                - m0.get("infergate_upstream_errors_total", reason="connect"), 2)
        self.assertEqual(m1.get("inference_objective_request_error_total", model_name="dead")
                         - m0.get("inference_objective_request_error_total", model_name="dead"), 1)
        eps = self.gw.endpoints()
        self.assertGreaterEqual(eps["dead-0"]["failures_total"], 1)
        self.assertGreaterEqual(eps["dead-1"]["failures_total"], 1)

    def test_502_endpoint_resets_before_responding(self):
        accepted = self.resetting.accepted
        res = self.post("/v1/chat/completions", chat("reset"))
        self.assertOpenAIError(res, 502)
        self.assertGreater(self.resetting.accepted, accepted)

    def test_502_endpoint_answers_garbage(self):
        res = self.post("/v1/chat/completions", chat("garbage"))
        self.assertOpenAIError(res, 502)

    # ---- 503

    def test_503_pool_without_endpoints(self):
        res = self.post("/v1/completions", completion("empty"))
        self.assertOpenAIError(res, 503)

    # ---- 504

    def test_504_upstream_slower_than_response_timeout(self):
        res = self.post("/v1/completions", completion("slow"))
        self.assertOpenAIError(res, 504)
        self.assertLess(res.elapsed, 2.9, "the upstream response timeout is 1s")
        self.assertGreaterEqual(res.elapsed, 0.9)
        self.assertEqual(self.gw.total_in_flight(), 0)

    # ---- errors of the pod

    def test_pod_error_passes_through_unchanged(self):
        body = completion("flaky")
        direct = curl(self.flaky.url("/v1/completions"), body=body)
        self.assertEqual(direct.status, 500, str(direct))
        via = self.post("/v1/completions", body)
        self.assertEqual(via.status, 500, str(via))
        self.assertEqual(via.body, direct.body)
        self.assertEqual(via.headers.get("content-type"), direct.headers.get("content-type"))
        self.assertEqual(via.headers.get("x-sim-pod"), "flaky-pod")

    def test_pod_error_of_a_streamed_request_passes_through(self):
        body = chat("flaky", stream=True)
        direct = curl(self.flaky.url("/v1/chat/completions"), body=body)
        via = self.post("/v1/chat/completions", body)
        self.assertEqual(via.status, direct.status, str(via))
        self.assertEqual(via.body, direct.body)

    def test_pod_404_for_a_model_it_does_not_serve_passes_through(self):
        # "ghost" is routed to the good pool, whose pod does not serve it: vLLM's 404, not ours.
        body = completion("ghost")
        direct = curl(self.good.url("/v1/completions"), body=body)
        self.assertEqual(direct.status, 404, str(direct))
        via = self.post("/v1/completions", body)
        self.assertEqual(via.status, 404, str(via))
        self.assertEqual(via.body, direct.body)


if __name__ == "__main__":
    harness.main()
