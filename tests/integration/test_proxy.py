#!/usr/bin/env python3
"""Proxying (SPEC §3.2-3.3, §4): the model rewrite in both directions (JSON and every SSE event),
usage, pass-through, GET /v1/models, forwarded and stripped headers, keep-alive, pipelining,
and streaming that is not buffered."""

import json
import subprocess
import threading
import time

import harness
from harness import (CurlStream, GatewayTestCase, RawConnection, chat, completion, curl,
                     curl_stream, endpoint, inference_model, inference_pool, proxy_config,
                     request_bytes, wait_until)

class ProxyTest(GatewayTestCase):
    """One pool, one pod. "alias" is rewritten to "real-model"; "base-model" is not configured
    and passes through (exactly one pool)."""

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim(pod_name="pod-a", served=["real-model", "base-model"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("pod-a", cls.pod.address)]),
            inference_pool("llama"),
            inference_model("alias", "llama", targets=[("real-model", 100)]),
        ])

    def setUp(self):
        super().setUp()
        self.pod.reset()

    def last_upstream(self) -> dict:
        reqs = self.pod.v1_requests()
        self.assertTrue(reqs, "the pod received nothing")
        return reqs[-1]

    # ---- the rewrite

    def test_completion_model_rewritten_both_ways(self):
        body = completion("alias", prompt="Tell me about the sea", max_tokens=3, temperature=0.5)
        res = curl(self.gw.url("/v1/completions"), body=body)
        self.assertEqual(res.status, 200, str(res))
        doc = res.json()
        self.assertEqual(doc["model"], "alias")
        self.assertEqual(doc["object"], "text_completion")
        self.assertTrue(doc["choices"][0]["text"])
        self.assertEqual(res.headers.get("x-sim-pod"), "pod-a")
        # What reached the pod: the target name, everything else as sent, Content-Length right.
        up = self.last_upstream()
        self.assertEqual(up["method"], "POST")
        self.assertEqual(up["path"], "/v1/completions")
        sent = json.loads(up["body"])
        self.assertEqual(sent["model"], "real-model")
        self.assertEqual({k: v for k, v in sent.items() if k != "model"},
                         {k: v for k, v in body.items() if k != "model"})
        self.assertEqual(int(up["headers"]["content-length"]), len(up["body"].encode()))

    def test_chat_model_rewritten_both_ways(self):
        res = curl(self.gw.url("/v1/chat/completions"), body=chat("alias", max_tokens=2))
        self.assertEqual(res.status, 200, str(res))
        doc = res.json()
        self.assertEqual(doc["model"], "alias")
        self.assertEqual(doc["object"], "chat.completion")
        self.assertEqual(json.loads(self.last_upstream()["body"])["model"], "real-model")

    def test_escaped_model_name_is_matched_and_rewritten(self):
        # "al\u0069as" is "alias" once unescaped.
        raw = b'{"model": "al\\u0069as", "prompt": "hi", "max_tokens": 2}'
        res = curl(self.gw.url("/v1/completions"), body=raw)
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "alias")
        self.assertEqual(json.loads(self.last_upstream()["body"])["model"], "real-model")

    def test_streamed_chat_rewritten_in_every_event(self):
        body = chat("alias", stream=True, max_tokens=6, stream_options={"include_usage": True})
        res = curl_stream(self.gw.url("/v1/chat/completions"), body)
        self.assertEqual(res.rc, 0, str(res))
        self.assertEqual(res.status, 200, str(res))
        self.assertTrue(res.headers.get("content-type", "").startswith("text/event-stream"), str(res))
        self.assertTrue(res.done(), f"no final [DONE]: {res}")
        events = res.json_events()
        self.assertGreaterEqual(len(events), 3, str(res))
        for e in events:
            self.assertEqual(e.get("model"), "alias", e)
            self.assertEqual(e.get("object"), "chat.completion.chunk", e)
        self.assertEqual(res.raw.count(b"real-model"), 0, "the target name leaked to the client")
        # include_usage: the last chunk before [DONE] carries usage and no choices.
        usage = events[-1].get("usage")
        self.assertIsNotNone(usage, events[-1])
        self.assertGreater(usage["prompt_tokens"], 0)
        self.assertGreater(usage["completion_tokens"], 0)
        up = json.loads(self.last_upstream()["body"])
        self.assertEqual(up["model"], "real-model")
        self.assertIs(up["stream"], True)
        self.assertEqual(up["stream_options"], {"include_usage": True})

    def test_streamed_completion_rewritten_in_every_event(self):
        res = curl_stream(self.gw.url("/v1/completions"), completion("alias", stream=True))
        self.assertEqual(res.rc, 0, str(res))
        self.assertTrue(res.done(), str(res))
        events = res.json_events()
        self.assertTrue(events)
        self.assertTrue(all(e.get("model") == "alias" for e in events), events)

    # ---- usage

    def test_usage_passes_and_is_counted(self):
        body = completion("alias", max_tokens=3)
        m0 = self.gw.metrics()
        res = curl(self.gw.url("/v1/completions"), body=body)
        self.assertEqual(res.status, 200, str(res))
        usage = res.json()["usage"]
        self.assertGreater(usage["prompt_tokens"], 0)
        self.assertEqual(usage["completion_tokens"], 3)
        self.assertEqual(usage["total_tokens"], usage["prompt_tokens"] + usage["completion_tokens"])
        # The same request straight to the pod reports the same usage.
        direct = curl(self.pod.url("/v1/completions"), body=dict(body, model="real-model"))
        self.assertEqual(direct.json()["usage"], usage)
        m1 = wait_until(lambda: (lambda m: m if m.get(
            "inference_objective_output_tokens_count", model_name="alias") > m0.get(
            "inference_objective_output_tokens_count", model_name="alias") else None)(
            self.gw.metrics()), 3, message="output tokens observed")
        self.assertEqual(m1.get("inference_objective_output_tokens_sum", model_name="alias")
                         - m0.get("inference_objective_output_tokens_sum", model_name="alias"), 3)
        self.assertEqual(m1.get("inference_objective_input_tokens_sum", model_name="alias")
                         - m0.get("inference_objective_input_tokens_sum", model_name="alias"),
                         usage["prompt_tokens"])
        # Criticality Critical is priority 1 (SPEC §3.4).
        self.assertEqual(m1.get("inference_objective_request_total", model_name="alias",
                                target_model_name="real-model", priority="1")
                         - m0.get("inference_objective_request_total", model_name="alias",
                                  target_model_name="real-model", priority="1"), 1)

    def test_streamed_usage_is_counted(self):
        m0 = self.gw.metrics()
        body = chat("alias", stream=True, max_tokens=3, stream_options={"include_usage": True})
        res = curl_stream(self.gw.url("/v1/chat/completions"), body)
        self.assertTrue(res.done(), str(res))
        usage = res.json_events()[-1]["usage"]
        self.assertEqual(usage["completion_tokens"], 3)
        m1 = wait_until(lambda: (lambda m: m if m.get(
            "inference_objective_output_tokens_count", model_name="alias") > m0.get(
            "inference_objective_output_tokens_count", model_name="alias") else None)(
            self.gw.metrics()), 3, message="output tokens observed")
        self.assertEqual(m1.get("inference_objective_output_tokens_sum", model_name="alias")
                         - m0.get("inference_objective_output_tokens_sum", model_name="alias"), 3)
        self.assertEqual(m1.get("inference_objective_input_tokens_sum", model_name="alias")
                         - m0.get("inference_objective_input_tokens_sum", model_name="alias"),
                         usage["prompt_tokens"])

    # ---- pass-through

    def test_unknown_model_passes_through_unchanged_with_one_pool(self):
        # Odd spacing, key order and escapes: the bytes must arrive exactly as sent.
        raw = ('{ "prompt" : "caf\\u00e9 \u00e9t\u00e9",\n  "max_tokens":2, "model" :"base-model",'
               '"extra": {"nested": [1, 2.50, null]} }').encode()
        res = curl(self.gw.url("/v1/completions"), body=raw)
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "base-model")
        up = self.last_upstream()
        self.assertEqual(up["body"].encode(), raw)
        self.assertEqual(int(up["headers"]["content-length"]), len(raw))

    def test_other_post_with_a_model_is_routed(self):
        curl(self.gw.url("/v1/some/other/endpoint"), body={"model": "alias", "input": "x"})
        up = self.last_upstream()
        self.assertEqual(up["path"], "/v1/some/other/endpoint")
        self.assertEqual(json.loads(up["body"])["model"], "real-model")

    def test_query_string_is_forwarded(self):
        res = curl(self.gw.url("/v1/completions?foo=bar&x=1"), body=completion("alias"))
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(self.last_upstream()["path"], "/v1/completions?foo=bar&x=1")

    # ---- GET /v1/models

    def test_models_list(self):
        res = curl(self.gw.url("/v1/models"))
        self.assertEqual(res.status, 200, str(res))
        self.assertTrue(res.headers.get("content-type", "").startswith("application/json"))
        doc = res.json()
        self.assertEqual(doc["object"], "list")
        self.assertEqual([m["id"] for m in doc["data"]], ["alias"])
        for m in doc["data"]:
            self.assertEqual(m["object"], "model")
        self.assertEqual(self.pod.v1_requests(), [], "GET /v1/models reached the pod")

    # ---- headers

    def test_forwarded_and_stripped_request_headers(self):
        headers = [
            ("X-Request-Id", "req-12345"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Authorization", "Bearer sk-test"),
            ("X-Custom", "kept"),
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("X-Hop-Custom", "must go"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Gateway-Destination-Endpoint", "10.0.0.1:8000"),
            ("X-Gateway-Destination-Endpoint-Served", "10.0.0.1:8000"),
            ("Transfer-Encoding", "chunked"),
        ]
        res = curl(self.gw.url("/v1/completions"), body=completion("alias"), headers=headers)
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.headers.get("x-request-id"), "req-12345")
        up = self.last_upstream()
        h = up["headers"]
        self.assertEqual(h.get("x-request-id"), "req-12345")
        self.assertEqual(h.get("x-forwarded-for"), "203.0.113.7, 127.0.0.1")
        self.assertEqual(h.get("x-forwarded-proto"), "http")
        self.assertEqual(h.get("authorization"), "Bearer sk-test")
        self.assertEqual(h.get("x-custom"), "kept")
        for gone in ("x-hop-custom", "keep-alive", "te", "proxy-authorization", "proxy-connection",
                     "x-gateway-destination-endpoint", "x-gateway-destination-endpoint-served",
                     "transfer-encoding", "upgrade"):
            self.assertNotIn(gone, h, f"{gone} was forwarded: {h}")
        self.assertNotIn("x-hop-custom", h.get("connection", "").lower())
        # The chunked body arrived whole, with a Content-Length.
        self.assertEqual(int(h["content-length"]), len(up["body"].encode()))
        self.assertEqual(json.loads(up["body"])["prompt"], "Hello there")

    def test_request_id_generated_when_absent(self):
        res = curl(self.gw.url("/v1/completions"), body=completion("alias"))
        self.assertEqual(res.status, 200, str(res))
        rid = self.last_upstream()["headers"].get("x-request-id", "")
        self.assertTrue(rid, "no x-request-id upstream")
        self.assertRegex(rid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(res.headers.get("x-request-id"), rid)
        res2 = curl(self.gw.url("/v1/completions"), body=completion("alias"))
        self.assertNotEqual(res2.headers.get("x-request-id"), rid, "request ids repeat")
        self.assertEqual(self.last_upstream()["headers"]["x-forwarded-for"], "127.0.0.1")

    def test_gateway_errors_carry_a_request_id(self):
        res = curl(self.gw.url("/v1/completions"), body=b"{bad", headers={"X-Request-Id": "r-9"})
        self.assertEqual(res.status, 400)
        self.assertEqual(res.headers.get("x-request-id"), "r-9")

    def test_expect_100_continue(self):
        res = curl(self.gw.url("/v1/completions"), body=completion("alias"),
                   headers={"Expect": "100-continue"})
        self.assertEqual(res.status, 200, str(res))
        self.assertNotIn("expect", self.last_upstream()["headers"])

    def test_http10_client(self):
        res = curl(self.gw.url("/v1/completions"), body=completion("alias"), args=["--http1.0"])
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.json()["model"], "alias")

    # ---- connections

    def test_keep_alive_reuses_the_connection(self):
        before = self.gw.metrics().get("infergate_downstream_connections_total")
        body = json.dumps(completion("alias"))
        p = subprocess.run(
            [harness.CURL, "-sS", "-v", "--http1.1", "-H", "Content-Type: application/json",
             "--data-binary", body, self.gw.url("/v1/completions"),
             "--next", "-H", "Content-Type: application/json", "--data-binary", body,
             self.gw.url("/v1/completions"),
             "--next", self.gw.url("/v1/models")],
            capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.count('"model":"alias"') + p.stdout.count('"model": "alias"'), 2,
                         p.stdout)
        self.assertRegex(p.stderr, r"Re-using existing connection")
        after = self.gw.metrics().get("infergate_downstream_connections_total")
        self.assertEqual(after - before, 1, "curl needed more than one connection")

    def test_sequential_requests_on_one_socket(self):
        conn = self.resource(RawConnection(self.gw.port))
        for i in range(5):
            conn.send(request_bytes("POST", "/v1/completions", completion("alias"),
                                    headers={"X-Request-Id": f"seq-{i}"}))
            res = conn.read_response()
            self.assertEqual(res.status, 200, str(res))
            self.assertEqual(res.headers.get("x-request-id"), f"seq-{i}")
            self.assertEqual(res.json()["model"], "alias")

    def test_pipelined_requests_answered_in_order(self):
        conn = self.resource(RawConnection(self.gw.port))
        reqs = [
            request_bytes("POST", "/v1/chat/completions",
                          chat("alias", max_tokens=8, stream=True), headers={"X-Request-Id": "p-1"}),
            request_bytes("POST", "/v1/completions", completion("alias", max_tokens=1),
                          headers={"X-Request-Id": "p-2"}),
            request_bytes("GET", "/v1/models", headers={"X-Request-Id": "p-3"}),
        ]
        conn.send(b"".join(reqs))  # one write
        r1, r2, r3 = conn.read_response(), conn.read_response(), conn.read_response()
        self.assertEqual((r1.status, r2.status, r3.status), (200, 200, 200), f"{r1}\n{r2}\n{r3}")
        self.assertEqual(r1.headers.get("x-request-id"), "p-1")
        self.assertEqual(r2.headers.get("x-request-id"), "p-2")
        self.assertEqual(r3.headers.get("x-request-id"), "p-3")
        self.assertTrue(r1.body.rstrip().endswith(b"data: [DONE]"), r1.body[-200:])
        self.assertEqual(r2.json()["model"], "alias")
        self.assertEqual(r3.json()["object"], "list")
        # And the connection is still good for more.
        conn.send(request_bytes("POST", "/v1/completions", completion("alias")))
        self.assertEqual(conn.read_response().status, 200)

    def test_pipelined_error_then_request(self):
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(request_bytes("POST", "/v1/completions", b"{broken", headers={"X-Request-Id": "e-1"})
                  + request_bytes("POST", "/v1/completions", completion("alias"),
                                  headers={"X-Request-Id": "e-2"}))
        r1, r2 = conn.read_response(), conn.read_response()
        self.assertOpenAIError(r1, 400)
        self.assertEqual(r1.headers.get("x-request-id"), "e-1")
        self.assertEqual(r2.status, 200, str(r2))
        self.assertEqual(r2.headers.get("x-request-id"), "e-2")

    def test_connection_close_is_honoured(self):
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(request_bytes("POST", "/v1/completions", completion("alias"),
                                headers={"Connection": "close"}))
        res = conn.read_response()
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.headers.get("connection", "").lower(), "close")
        self.assertTrue(conn.at_eof(), "the gateway kept a Connection: close socket open")
        self.assertNotIn("close", self.last_upstream()["headers"].get("connection", "").lower(),
                         "the client's Connection: close was forwarded upstream")

    def test_request_smuggling_shapes_are_rejected(self):
        # Content-Length together with Transfer-Encoding, or two different Content-Lengths: an
        # intermediary must not guess (RFC 9112 §6.3); the gateway answers 400 and closes.
        body = json.dumps(completion("alias")).encode()
        for extra in ([("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")],
                      [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))]):
            with self.subTest(headers=extra):
                conn = self.resource(RawConnection(self.gw.port))
                conn.send(request_bytes("POST", "/v1/completions", body, headers=extra))
                res = conn.read_response()
                self.assertOpenAIError(res, 400)
                self.assertTrue(conn.at_eof())
        self.assertEqual(self.pod.v1_requests(), [])

    def test_garbage_request_line_is_400(self):
        conn = self.resource(RawConnection(self.gw.port))
        conn.send(b"HELLO WORLD\r\n\r\n")
        self.assertOpenAIError(conn.read_response(), 400)
        self.assertTrue(conn.at_eof())

    def test_concurrent_clients(self):
        results = []

        def client(i):
            results.append(curl(self.gw.url("/v1/chat/completions"),
                                body=chat("alias", content=f"client {i}", max_tokens=3)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 16)
        for r in results:
            self.assertEqual(r.status, 200, str(r))
            self.assertEqual(r.json()["model"], "alias")
        wait_until(lambda: self.gw.total_in_flight() == 0, 3, message="in_flight back to 0")


class ReplayTest(GatewayTestCase):
    """Real vLLM/OpenAI bytes (tests/fixtures/openai), served by a scripted upstream in small
    pieces, so events and JSON tokens are split across reads at every offset."""

    def replay(self, response: bytes, chunk: int, path: str, body: dict):
        up = self.resource(harness.FakeUpstream("script", response=response, chunk=chunk,
                                                delay=0.0002))
        gw = self.gateway([
            proxy_config([endpoint("fake", up.address)], scrape=False),
            inference_pool("llama"),
            inference_model("client-name", "llama", targets=[("target-name", 1)]),
        ])
        return gw, up

    def check_stream(self, fixture_name: str, chunk: int, path: str, events: int | None = None):
        raw = harness.fixture(fixture_name)
        if events is not None:  # the first `events` events and the final [DONE]
            raw = b"".join(e + b"\n\n" for e in raw.split(b"\n\n")[:events]) + b"data: [DONE]\n\n"
        upstream_events = harness.parse_sse_data(raw)
        gw, up = self.replay(harness.http_response(raw, "text/event-stream", chunked=True),
                             chunk, path, {})
        body = (completion("client-name", stream=True) if path == "/v1/completions"
                else chat("client-name", stream=True))
        res = curl_stream(gw.url(path), body)
        self.assertEqual(res.rc, 0, str(res))
        self.assertEqual(res.status, 200, str(res))
        got = res.data()
        self.assertEqual(len(got), len(upstream_events), str(res))
        self.assertEqual(got[-1], "[DONE]")
        for sent, received in zip(upstream_events, got):
            if sent == "[DONE]":
                continue
            want = json.loads(sent)
            want["model"] = "client-name"
            self.assertEqual(json.loads(received), want)
        self.assertIn(b'"model":"target-name"', up.last_request.replace(b" ", b""))

    def test_vllm_chat_stream_split_everywhere(self):
        with self.subTest(chunk=1):
            self.check_stream("vllm-chat-stream.sse", 1, "/v1/chat/completions", events=4)
        with self.subTest(chunk=7):
            self.check_stream("vllm-chat-stream.sse", 7, "/v1/chat/completions", events=60)
        with self.subTest(chunk=64):  # the whole 95 KB transcript
            self.check_stream("vllm-chat-stream.sse", 64, "/v1/chat/completions")

    def test_vllm_completion_stream(self):
        self.check_stream("vllm-completion-stream.sse", 13, "/v1/completions")

    def test_openai_stream_with_usage(self):
        self.check_stream("openai-chat-stream-include-usage.sse", 29, "/v1/chat/completions")

    def test_json_bodies(self):
        for name in ("vllm-chat-completion.json", "vllm-chat-completion-v0.7.2.json",
                     "vllm-completion.json", "vllm-v1-completion.json"):
            for chunked in (False, True):
                with self.subTest(fixture=name, chunked=chunked):
                    raw = harness.fixture(name)
                    gw, up = self.replay(harness.http_response(raw, "application/json", chunked),
                                         5, "/v1/chat/completions", {})
                    res = curl(gw.url("/v1/chat/completions"), body=chat("client-name"))
                    self.assertEqual(res.status, 200, str(res))
                    want = json.loads(raw)
                    want["model"] = "client-name"
                    self.assertEqual(res.json(), want)
                    self.assertEqual(int(res.headers["content-length"]), len(res.body))

    def test_close_delimited_body_ends_with_the_upstream_close(self):
        # No Content-Length, not chunked: the body ends where the pod closes. Corked, the close
        # arrives in the same segment as the last bytes; uncorked, right after them. The
        # gateway must see it at once, not after upstreamIdleTimeout (5s here).
        raw = harness.fixture("vllm-chat-completion.json")
        response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\n\r\n" + raw)
        for cork in (True, False):
            with self.subTest(cork=cork):
                up = self.resource(harness.FakeUpstream("script", response=response, cork=cork))
                gw = self.gateway([
                    proxy_config([endpoint("fake", up.address)], scrape=False),
                    inference_pool("llama"),
                    inference_model("client-name", "llama", targets=[("target-name", 1)]),
                ])
                started = time.monotonic()
                res = curl(gw.url("/v1/chat/completions"), body=chat("client-name"))
                elapsed = time.monotonic() - started
                self.assertEqual(res.status, 200, str(res))
                want = json.loads(raw)
                want["model"] = "client-name"
                self.assertEqual(res.json(), want)
                self.assertLess(elapsed, 2.0, "the upstream's close was not noticed")


class ListenersTest(GatewayTestCase):

    def test_two_listeners_serve_the_same_routes(self):
        pod = self.sim(pod_name="pod", served=["t"])
        gw = self.gateway([
            proxy_config([endpoint("pod", pod.address)],
                         listeners=[{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}]),
            inference_pool("llama"),
            inference_model("m", "llama", targets=[("t", 1)]),
        ], listeners=2)
        self.assertNotEqual(gw.ports[0], gw.ports[1])
        for port in gw.ports:
            res = curl(gw.url("/v1/completions", port=port), body=completion("m"))
            self.assertEqual(res.status, 200, str(res))
            self.assertEqual(res.json()["model"], "m")


class StreamingLatencyTest(GatewayTestCase):
    """Every SSE event reaches the client as soon as the pod sends it (SPEC §4)."""

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim("--ttft-ms", "20", "--itl-ms", "300", "--output-tokens", "8",
                                pod_name="slow-stream", served=["target"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("slow-stream", cls.pod.address)]),
            inference_pool("llama"),
            inference_model("client-name", "llama", targets=[("target", 1)]),
        ])

    def test_first_event_arrives_while_the_pod_is_still_generating(self):
        stream = CurlStream(self.gw.url("/v1/chat/completions"),
                            chat("client-name", stream=True, max_tokens=8))
        res = stream.wait(30)
        self.assertEqual(res.rc, 0, str(res))
        self.assertTrue(res.done(), str(res))
        self.assertGreaterEqual(res.elapsed, 2.0, "8 tokens 300ms apart take > 2s")
        self.assertIsNotNone(res.first_byte_at)
        self.assertLess(res.first_byte_at, 0.4 * res.elapsed,
                        f"first event at {res.first_byte_at:.3f}s of {res.elapsed:.3f}s")
        # The events are spread out in time, not delivered in one burst at the end.
        times = [t for t, _ in res.events]
        self.assertGreater(times[-1] - times[0], 1.5, times)
        token_events = [e for e in res.json_events() if e["choices"] and
                        e["choices"][0]["delta"].get("content")]
        self.assertGreaterEqual(len(token_events), 6)
        self.assertTrue(all(e["model"] == "client-name" for e in res.json_events()))

    def test_completion_stream_is_not_buffered(self):
        stream = CurlStream(self.gw.url("/v1/completions"),
                            completion("client-name", stream=True, max_tokens=8))
        stream.wait_for_data(2, timeout=5)
        mid = stream.raw
        res = stream.wait(30)
        self.assertTrue(res.done(), str(res))
        self.assertNotIn(b"[DONE]", mid)
        self.assertLess(res.first_byte_at, 0.4 * res.elapsed)


if __name__ == "__main__":
    harness.main()
