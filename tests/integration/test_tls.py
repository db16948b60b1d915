#!/usr/bin/env python3
"""TLS listeners (SPEC §4): HTTP/2 via ALPN and HTTP/1.1 over TLS with real clients, clear
errors for bad key material at --check and start-up, certificate reload on SIGHUP without
dropping connections. Certificates are made by the openssl CLI in a temporary directory."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess

import harness
from harness import (GatewayTestCase, completion, endpoint, inference_model, inference_pool,
                     proxy_config, render, wait_until)
from test_http2 import curl_h2, sse_data

OPENSSL = shutil.which("openssl") or "openssl"
NGHTTP = shutil.which("nghttp")


def make_cert(directory: str, name: str, cn: str = "localhost") -> tuple[str, str]:
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def tls_config(pod_address: str, cert: str, key: str) -> list:
    return [
        proxy_config([endpoint("pod-a", pod_address)],
                     listeners=[{"address": "127.0.0.1:0",
                                 "tls": {"certFile": cert, "keyFile": key}}]),
        inference_pool("llama"),
        inference_model("alias", "llama", targets=[("real-model", 100)]),
    ]


def peer_cert_sha256(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class TlsTest(GatewayTestCase):
    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim(pod_name="pod-a", served=["real-model"])
        cls.cert, cls.key = make_cert(cls.class_tmp(), "server")
        cls.gw = cls.class_gateway(tls_config(cls.pod.address, cls.cert, cls.key))
        cls.base = f"https://127.0.0.1:{cls.gw.port}"

    def test_h2_via_alpn(self):
        status, headers, body, version = curl_h2(
            self.base + "/v1/completions", completion("alias", max_tokens=2),
            args=["--http2", "--cacert", self.cert])
        self.assertEqual((version, status), ("2", 200), body)
        self.assertEqual(json.loads(body)["model"], "alias")

    def test_h2_streaming_over_tls(self):
        status, headers, body, version = curl_h2(
            self.base + "/v1/completions", completion("alias", max_tokens=4, stream=True),
            args=["--http2", "-N", "--cacert", self.cert])
        self.assertEqual((version, status), ("2", 200), body)
        data = sse_data(body)
        self.assertEqual(data[-1], "[DONE]", body)
        self.assertTrue(all(json.loads(d)["model"] == "alias" for d in data[:-1]))

    def test_http1_over_tls(self):
        status, _, body, version = curl_h2(self.base + "/v1/completions",
                                           completion("alias", max_tokens=2),
                                           args=["--http1.1", "--cacert", self.cert])
        self.assertEqual((version, status), ("1.1", 200), body)
        self.assertEqual(json.loads(body)["model"], "alias")
        # Streaming over HTTP/1.1 + TLS too.
        status, _, body, version = curl_h2(self.base + "/v1/completions",
                                           completion("alias", max_tokens=3, stream=True),
                                           args=["--http1.1", "-N", "--cacert", self.cert])
        self.assertEqual((version, status), ("1.1", 200), body)
        self.assertEqual(sse_data(body)[-1], "[DONE]")

    def test_x_forwarded_proto_is_https(self):
        self.pod.reset()
        curl_h2(self.base + "/v1/completions", completion("alias", max_tokens=1),
                args=["--http2", "--cacert", self.cert])
        up = self.pod.v1_requests()[-1]
        self.assertEqual(up["headers"].get("x-forwarded-proto"), "https")

    def test_nghttp_over_tls(self):
        if not NGHTTP:
            self.skipTest("nghttp not installed")
        p = subprocess.run([NGHTTP, self.base + "/v1/models"], capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("alias", [m["id"] for m in json.loads(p.stdout)["data"]])

    def test_tls_1_1_is_refused(self):
        p = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{self.gw.port}",
                            "-tls1_1"], input=b"", capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)


class TlsConfigErrorTest(GatewayTestCase):
    def check(self, cert: str, key: str) -> subprocess.CompletedProcess:
        path = os.path.join(self.tmp(), "gw.yaml")
        with open(path, "w") as f:
            f.write(render(tls_config("127.0.0.1:1", cert, key)))
        return subprocess.run([harness.GATEWAY_BIN, "--config", path, "--check"],
                              capture_output=True, text=True, timeout=20)

    def test_mismatched_key(self):
        cert, _ = make_cert(self.tmp(), "a")
        _, other_key = make_cert(self.tmp(), "b")
        p = self.check(cert, other_key)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(other_key, p.stderr)
        self.assertIn("does not match", p.stderr)
        # Start-up says the same and exits 1.
        path = os.path.join(self.tmp(), "gw.yaml")
        run = subprocess.run([harness.GATEWAY_BIN, "--config", path], capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("does not match", run.stderr)

    def test_not_a_certificate(self):
        _, key = make_cert(self.tmp(), "a")
        bad = os.path.join(self.tmp(), "bad.crt")
        with open(bad, "w") as f:
            f.write("not a certificate\n")
        p = self.check(bad, key)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(bad, p.stderr)

    def test_bad_key(self):
        cert, _ = make_cert(self.tmp(), "a")
        bad = os.path.join(self.tmp(), "bad.key")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        p = self.check(cert, bad)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(bad, p.stderr)

    def test_valid_check_passes(self):
        cert, key = make_cert(self.tmp(), "a")
        p = self.check(cert, key)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class TlsReloadTest(GatewayTestCase):
    def test_sighup_reloads_the_certificate_without_dropping_connections(self):
        pod = self.sim(pod_name="pod-a", served=["real-model"])
        cert, key = make_cert(self.tmp(), "server", cn="first")
        gw = self.gateway(tls_config(pod.address, cert, key))
        before = peer_cert_sha256(gw.port)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=10)
        self.addCleanup(conn.close)
        body = json.dumps(completion("alias", max_tokens=1))
        conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
        self.assertEqual(conn.getresponse().read() and 200, 200)

        # New files in place (same paths), then SIGHUP.
        new_cert, new_key = make_cert(self.tmp(), "next", cn="second")
        os.replace(new_cert, cert)
        os.replace(new_key, key)
        start = gw.line_count()
        gw.signal(signal.SIGHUP)
        gw.wait_for_line("TLS certificate reloaded", start=start)
        after = peer_cert_sha256(gw.port)
        self.assertNotEqual(before, after)
        # The connection made before the reload still works.
        conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
        res = conn.getresponse()
        self.assertEqual(res.status, 200)
        self.assertEqual(json.loads(res.read())["model"], "alias")

    def test_sighup_with_a_broken_key_keeps_the_running_certificate(self):
        pod = self.sim(pod_name="pod-a", served=["real-model"])
        cert, key = make_cert(self.tmp(), "server")
        gw = self.gateway(tls_config(pod.address, cert, key))
        before = peer_cert_sha256(gw.port)
        _, other_key = make_cert(self.tmp(), "other")
        os.replace(other_key, key)  # mismatched now
        start = gw.line_count()
        gw.signal(signal.SIGHUP)
        gw.wait_for_line("TLS reload failed", start=start)
        wait_until(lambda: peer_cert_sha256(gw.port) == before, message="old certificate served")


if __name__ == "__main__":
    harness.main()
