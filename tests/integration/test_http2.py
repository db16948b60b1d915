#!/usr/bin/env python3
"""Downstream HTTP/2 (SPEC §4): h2c with prior knowledge on the same port as HTTP/1.1, with real
clients (curl, nghttp, h2load) and a minimal raw-frame client for what they cannot do on demand:
RST_STREAM of one stream, a client that stops reading one stream, GOAWAY on drain."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import harness
from harness import (GatewayTestCase, completion, endpoint, inference_model, inference_pool,
                     proxy_config, wait_until)

NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")

# Frame types (RFC 9113 §6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def curl_h2(url: str, body=None, args=(), timeout: float = 15) -> tuple[int, dict, bytes, str]:
    """curl over HTTP/2 (prior knowledge unless `args` says otherwise). Returns the status, the
    headers of the final response, the body, and the HTTP version curl used."""
    argv = [harness.CURL, "-sS", "-i", "--max-time", str(timeout), "-o", "-",
            "-w", "\n%{http_version}"]
    if not any(a.startswith("--http") for a in args):
        argv.append("--http2-prior-knowledge")
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        argv += ["--data-binary", "@-", "-H", "content-type: application/json"]
    argv += list(args) + [url]
    p = subprocess.run(argv, input=data or b"", capture_output=True, timeout=timeout + 10)
    out, _, version = p.stdout.rpartition(b"\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest, version.decode().strip() or p.stderr.decode()


def sse_data(raw: bytes) -> list[str]:
    return [l[5:].strip() for l in raw.decode().split("\n") if l.startswith("data:")]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------------------------
# A minimal HTTP/2 client: literal HPACK (no Huffman, no indexing) and raw frames.


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v


class RawH2:
    """One HTTP/2 connection driven frame by frame. Answers SETTINGS and PING; never sends a
    WINDOW_UPDATE unless told to (so a test controls flow control exactly)."""

    def __init__(self, port: int, initial_window: int = 65535):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.port = port
        settings = struct.pack(">HI", 4, initial_window)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(SETTINGS, 0, 0, settings))

    @staticmethod
    def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            struct.pack(">I", sid) + payload

    def request(self, sid: int, path: str, body: dict | None, method: str = "POST") -> None:
        data = json.dumps(body).encode() if body is not None else b""
        block = b"".join(hpack_literal(k, v) for k, v in [
            (":method", method), (":scheme", "http"), (":path", path),
            (":authority", f"127.0.0.1:{self.port}"), ("content-type", "application/json"),
            ("content-length", str(len(data)))])
        frames = self.frame(HEADERS, END_HEADERS | (0 if data else END_STREAM), sid, block)
        if data:
            frames += self.frame(DATA, END_STREAM, sid, data)
        self.sock.sendall(frames)

    def rst(self, sid: int, code: int = 8) -> None:  # 8 = CANCEL
        self.sock.sendall(self.frame(RST_STREAM, 0, sid, struct.pack(">I", code)))

    def window_update(self, sid: int, n: int) -> None:
        self.sock.sendall(self.frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", n)))

    def read_frame(self, timeout: float = 10) -> tuple[int, int, int, bytes] | None:
        """The next frame (type, flags, stream id, payload), or None at EOF."""
        self.sock.settimeout(timeout)
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buf += chunk
            n = int.from_bytes(self.buf[:3], "big")
            ftype, flags = self.buf[3], self.buf[4]
            sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            if ftype == SETTINGS and not flags & ACK:
                self.sock.sendall(self.frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                self.sock.sendall(self.frame(PING, ACK, 0, payload))
            return ftype, flags, sid, payload

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Http2Test(GatewayTestCase):
    """h2c with prior knowledge and HTTP/1.1 on one listener, one pod."""

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim(pod_name="pod-a", served=["real-model"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("pod-a", cls.pod.address)]),
            inference_pool("llama"),
            inference_model("alias", "llama", targets=[("real-model", 100)]),
        ])

    def test_prior_knowledge_json(self):
        status, headers, body, version = curl_h2(self.gw.url("/v1/completions"),
                                                 completion("alias", max_tokens=3))
        self.assertEqual(version, "2", body)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["model"], "alias")
        self.assertEqual(headers.get("x-sim-pod"), "pod-a")
        self.assertTrue(headers.get("x-request-id"))
        self.assertEqual(int(headers["content-length"]), len(body))

    def test_prior_knowledge_streaming(self):
        status, headers, body, version = curl_h2(
            self.gw.url("/v1/completions"), completion("alias", max_tokens=5, stream=True),
            args=["-N"])
        self.assertEqual((version, status), ("2", 200), body)
        self.assertTrue(headers["content-type"].startswith("text/event-stream"))
        data = sse_data(body)
        self.assertEqual(data[-1], "[DONE]", body)
        events = [json.loads(d) for d in data[:-1]]
        self.assertGreaterEqual(len(events), 3)
        self.assertTrue(all(e["model"] == "alias" for e in events), body)

    def test_http1_on_the_same_port(self):
        status, _, body, version = curl_h2(self.gw.url("/v1/completions"),
                                           completion("alias", max_tokens=2), args=["--http1.1"])
        self.assertEqual((version, status), ("1.1", 200), body)
        self.assertEqual(json.loads(body)["model"], "alias")

    def test_gateway_answers_and_errors_over_h2(self):
        status, _, body, version = curl_h2(self.gw.url("/v1/models"))
        self.assertEqual((version, status), ("2", 200), body)
        self.assertIn("alias", [m["id"] for m in json.loads(body)["data"]])
        status, _, body, _ = curl_h2(self.gw.url("/v1/nothing-here"))
        self.assertEqual(status, 404, body)
        self.assertEqual(set(json.loads(body)["error"]), {"message", "type", "param", "code"})

    def test_request_body_limit_413(self):
        big = json.dumps(completion("alias", prompt="x" * (1 << 21))).encode()
        status, _, body, version = curl_h2(self.gw.url("/v1/completions"), big)
        self.assertEqual((version, status), ("2", 413), body)
        self.assertEqual(json.loads(body)["error"]["code"], "request_too_large")

    def test_request_header_limit_431(self):
        status, _, body, version = curl_h2(self.gw.url("/v1/completions"),
                                           completion("alias", max_tokens=1),
                                           args=["-H", "x-big: " + "a" * 9000])
        self.assertEqual((version, status), ("2", 431), body)

    def test_nghttp(self):
        if not NGHTTP:
            self.skipTest("nghttp not installed (scripts/install-deps.sh: nghttp2-client)")
        path = os.path.join(self.tmp(), "body.json")
        with open(path, "w") as f:
            json.dump(completion("alias", max_tokens=2), f)
        p = subprocess.run([NGHTTP, "-d", path, "-H", "content-type: application/json",
                            self.gw.url("/v1/completions")], capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["model"], "alias")

    def test_h2load_100_concurrent_streams_on_one_connection(self):
        if not H2LOAD:
            self.skipTest("h2load not installed (scripts/install-deps.sh: nghttp2-client)")
        path = os.path.join(self.tmp(), "body.json")
        with open(path, "w") as f:
            json.dump(completion("alias", max_tokens=2), f)
        p = subprocess.run([H2LOAD, "-n", "400", "-c", "1", "-m", "100", "-d", path,
                            "-H", "content-type: application/json",
                            self.gw.url("/v1/completions")],
                           capture_output=True, timeout=120, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("requests: 400 total, 400 started, 400 done, 400 succeeded", p.stdout)
        self.assertIn("status codes: 400 2xx", p.stdout)
        self.assertIn("h2", p.stdout)
        wait_until(lambda: self.gw.total_in_flight() == 0, message="in-flight back to 0")


class Http2StreamControlTest(GatewayTestCase):
    """Per-stream cancellation, backpressure and drain, with a raw-frame client."""

    def start(self, *sim_args: str, workers: int = 1):
        self.pod = self.sim(*sim_args, pod_name="pod-a", served=["real-model"])
        self.gw = self.gateway([
            proxy_config([endpoint("pod-a", self.pod.address)], workers=workers,
                         limits={"upstreamIdleTimeout": "30s", "idleTimeout": "30s"}),
            inference_pool("llama"),
            inference_model("alias", "llama", targets=[("real-model", 100)]),
        ])

    def read_until(self, h2: RawH2, pred, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = h2.read_frame(timeout=max(0.05, deadline - time.monotonic()))
            if f is None:
                raise AssertionError("connection closed")
            if pred(f):
                return f
        raise AssertionError("frame not seen in time")

    def test_rst_stream_reaches_the_pod_as_a_disconnect(self):
        self.start("--itl-ms", "20", "--output-tokens", "500")
        h2 = self.resource(RawH2(self.gw.port))
        h2.request(1, "/v1/completions", completion("alias", max_tokens=500, stream=True))
        self.read_until(h2, lambda f: f[0] == DATA and f[2] == 1 and f[3])
        before = self.pod.stats().get("aborted_total", 0)
        t0 = time.monotonic()
        h2.rst(1)
        wait_until(lambda: self.pod.stats().get("aborted_total", 0) > before, timeout=1.0,
                   message="the pod to see the disconnect within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        wait_until(lambda: self.gw.total_in_flight() == 0, message="in-flight back to 0")
        # The connection itself is still usable.
        h2.request(3, "/v1/models", None, method="GET")
        f = self.read_until(h2, lambda f: f[2] == 3 and f[1] & END_STREAM)
        self.assertIn(f[0], (DATA, HEADERS))

    def test_connection_loss_aborts_every_stream(self):
        self.start("--itl-ms", "20", "--output-tokens", "500")
        h2 = RawH2(self.gw.port)
        h2.request(1, "/v1/completions", completion("alias", max_tokens=500, stream=True))
        h2.request(3, "/v1/completions", completion("alias", max_tokens=500, stream=True))
        seen = set()
        self.read_until(h2, lambda f: f[0] == DATA and seen.add(f[2]) is None and len(seen) == 2)
        h2.close()
        wait_until(lambda: self.pod.stats().get("aborted_total", 0) >= 2, timeout=2.0,
                   message="both upstream requests aborted")

    def test_slow_reader_is_throttled_and_other_streams_flow(self):
        # The pod could send ~25 MB as fast as it likes; the client never opens stream 1's
        # window beyond the initial 64 KiB. The gateway must hold only a bounded amount.
        self.start("--itl-ms", "0", "--ttft-ms", "0", "--output-tokens", "120000")
        h2 = self.resource(RawH2(self.gw.port))
        h2.request(1, "/v1/completions", completion("alias", max_tokens=120000, stream=True))
        got = {1: 0, 3: 0}
        ended = set()

        def pump(until, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until():
                f = h2.read_frame(timeout=max(0.05, deadline - time.monotonic()))
                if f is None:
                    raise AssertionError("connection closed")
                ftype, flags, sid, payload = f
                if ftype == DATA:
                    got[sid] = got.get(sid, 0) + len(payload)
                    if payload:
                        h2.window_update(0, len(payload))  # connection window only
                        if sid != 1:
                            h2.window_update(sid, len(payload))
                if flags & END_STREAM and ftype in (DATA, HEADERS):
                    ended.add(sid)
                if ftype == RST_STREAM:
                    raise AssertionError(f"stream {sid} reset")

        pump(lambda: got[1] >= 65535, 10)
        self.assertEqual(got[1], 65535)  # exactly the window: flow control holds
        # Let the pipeline fill whatever the gateway buffers, then measure.
        time.sleep(0.5)
        rss_before = rss_kib(self.gw.pid)
        # Another stream on the same connection completes while stream 1 is stuck.
        h2.request(3, "/v1/completions", completion("alias", max_tokens=5, stream=True))
        pump(lambda: 3 in ended, 10)
        self.assertIn(3, ended)
        time.sleep(2.0)
        rss_after = rss_kib(self.gw.pid)
        self.assertNotIn(1, ended)
        self.assertEqual(got[1], 65535)
        growth_kib = rss_after - rss_before
        self.assertLess(growth_kib, 8 * 1024, f"gateway RSS grew by {growth_kib} KiB")
        # The pod is throttled too: far fewer than the 200000 tokens were generated.
        h2.rst(1)
        wait_until(lambda: self.gw.total_in_flight() == 0, message="in-flight back to 0")

    def test_goaway_on_sigterm_lets_the_open_stream_finish(self):
        self.start("--itl-ms", "40", "--output-tokens", "25")
        h2 = RawH2(self.gw.port)
        self.addCleanup(h2.close)
        h2.request(1, "/v1/completions", completion("alias", max_tokens=25, stream=True))
        self.read_until(h2, lambda f: f[0] == DATA and f[2] == 1 and f[3])
        self.gw.expect_exit = True
        self.gw.signal(signal.SIGTERM)
        frames = []
        while True:
            f = h2.read_frame(timeout=10)
            if f is None:
                break
            frames.append(f)
            if f[0] == DATA and f[2] == 1 and f[1] & END_STREAM:
                break
        types = [f[0] for f in frames]
        self.assertIn(GOAWAY, types)
        goaway = frames[types.index(GOAWAY)]
        self.assertEqual(struct.unpack(">II", goaway[3][:8]), (1, 0))  # last id 1, NO_ERROR
        data = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
        self.assertIn(b"data: [DONE]", data)
        self.assertTrue(frames[-1][1] & END_STREAM)
        self.assertEqual(self.gw.wait(15), 0)


if __name__ == "__main__":
    harness.main()
