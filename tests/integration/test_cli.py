#!/usr/bin/env python3
"""The infergate binary's command line and life cycle (SPEC §1, §9): --version, --help, --check
(summary or FILE:LINE:COL errors), exit codes 0/1/2, SIGTERM/SIGINT, SIGHUP reload."""

import json
import os
import re
import signal
import socket
import subprocess
import textwrap

import harness
from harness import (GatewayTestCase, endpoint, inference_model, inference_pool, proxy_config,
                     render, wait_until)


def run_gateway(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([harness.GATEWAY_BIN, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def basic_config(sim_address: str = "127.0.0.1:9", models=("food-review",), **proxy_kw) -> str:
    docs = [proxy_config([endpoint("pod-a", sim_address)], **proxy_kw), inference_pool("llama")]
    docs += [inference_model(m, "llama") for m in models]
    return render(docs)


# A configuration with errors in three documents, each on a known line (LINE numbers below).
BAD_CONFIG = textwrap.dedent("""\
    apiVersion: infergate.io/v1alpha1
    kind: ProxyConfig
    metadata: {name: broken}
    spec:
      workers: 2
      listeners: [{address: "127.0.0.1:0"}]
      admin: {address: "127.0.0.1:0"}
      endpoints:
      - {name: pod-a, address: "127.0.0.1:8001", labels: {app: llama}}
      limits:
        headerTimeout: soon
    ---
    apiVersion: inference.networking.k8s.io/v1
    kind: InferencePool
    metadata: {name: llama}
    spec:
      selector: {matchLabels: {app: llama}}
      targetPorts: [{number: 8000}]
      endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: FailClose}
    ---
    apiVersion: inference.networking.x-k8s.io/v1alpha2
    kind: InferenceModel
    metadata: {name: food-review}
    spec:
      modelName: food-review
      poolRef: {name: llama}
      targetModels:
      - {name: food-review-1, weight: 90}
      - {name: food-review-2, weight: -5}
    """)
BAD_LINES = {11, 29}  # headerTimeout: soon / weight: -5


class CommandLineTest(GatewayTestCase):

    def test_version(self):
        p = run_gateway("--version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^infergate \S+")

    def test_help(self):
        p = run_gateway("--help")
        self.assertEqual(p.returncode, 0, p.stderr)
        for flag in ("--config", "--check", "--log-level", "--log-format", "--version"):
            self.assertIn(flag, p.stdout)

    def test_unknown_flag_exits_1(self):
        p = run_gateway("--config", "x.yaml", "--frobnicate")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("--frobnicate", p.stderr)

    def test_bad_flag_values_exit_1(self):
        for args in (["--log-level", "loud"], ["--log-format", "xml"], ["--config"]):
            with self.subTest(args=args):
                p = run_gateway(*args)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertTrue(p.stderr.strip())

    def test_no_config_exits_1(self):
        p = run_gateway()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("config", p.stderr)

    def test_missing_config_file_exits_1(self):
        path = os.path.join(self.tmp(), "does-not-exist.yaml")
        p = run_gateway("--config", path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("does-not-exist.yaml", p.stderr)

    def test_check_ok(self):
        path = os.path.join(self.tmp(), "ok.yaml")
        with open(path, "w") as f:
            f.write(basic_config(models=("food-review", "chat-bot")))
        p = run_gateway("--config", path, "--check")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("configuration OK", p.stdout)
        # The summary names the pool, the endpoint, the models and the listener.
        for word in ("llama", "pod-a", "food-review", "chat-bot", "127.0.0.1"):
            self.assertIn(word, p.stdout)

    def test_check_of_a_directory(self):
        d = os.path.join(self.tmp(), "conf.d")
        os.mkdir(d)
        docs = [proxy_config([endpoint("pod-a", "127.0.0.1:9")]), inference_pool("llama"),
                inference_model("food-review", "llama")]
        for i, doc in enumerate(docs):
            with open(os.path.join(d, f"{i:02d}.yaml"), "w") as f:
                f.write(render([doc]))
        p = run_gateway("--config", d, "--check")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("configuration OK", p.stdout)
        self.assertIn("food-review", p.stdout)

    def test_check_reports_every_error_with_file_line_col(self):
        path = os.path.join(self.tmp(), "bad.yaml")
        with open(path, "w") as f:
            f.write(BAD_CONFIG)
        p = run_gateway("--config", path, "--check")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertNotIn("configuration OK", p.stdout)
        rx = re.compile(r"^(.+?):(\d+):(\d+): (.+)$")
        errors = []
        for line in p.stderr.splitlines():
            m = rx.match(line)
            if m and "warning" not in m.group(4) and "info" not in m.group(4)[:5]:
                errors.append(m)
        self.assertGreaterEqual(len(errors), 2, p.stderr)
        for m in errors:
            self.assertEqual(os.path.basename(m.group(1)), "bad.yaml", m.group(0))
            self.assertGreaterEqual(int(m.group(3)), 1, m.group(0))
        self.assertTrue(BAD_LINES <= {int(m.group(2)) for m in errors},
                        f"expected errors on lines {sorted(BAD_LINES)}:\n{p.stderr}")
        # The messages name the field.
        self.assertIn("headerTimeout", p.stderr)
        self.assertIn("weight", p.stderr)

    def test_bad_config_without_check_exits_1(self):
        path = os.path.join(self.tmp(), "bad.yaml")
        with open(path, "w") as f:
            f.write(BAD_CONFIG)
        p = run_gateway("--config", path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"bad\.yaml:11:\d+: ")

    def test_port_in_use_exits_2(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = os.path.join(self.tmp(), "busy.yaml")
        with open(path, "w") as f:
            f.write(basic_config(listeners=[{"address": f"127.0.0.1:{port}"}]))
        p = run_gateway("--config", path)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn(str(port), p.stderr)

    def test_admin_port_in_use_exits_2(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = os.path.join(self.tmp(), "busy.yaml")
        with open(path, "w") as f:
            f.write(basic_config(admin={"address": f"127.0.0.1:{port}"}))
        p = run_gateway("--config", path)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)


class AdminTest(GatewayTestCase):

    @classmethod
    def start_class_fixtures(cls):
        cls.gw = cls.class_gateway(render([
            proxy_config([endpoint("pod-a", "127.0.0.1:9"),
                          endpoint("pod-b", "127.0.0.1:10", zone="b")]),
            inference_pool("llama"),
            inference_model("food-review", "llama", targets=[("fr-1", 90), ("fr-2", 10)]),
        ]))

    def test_healthz_and_readyz(self):
        self.assertEqual(self.gw.admin("/healthz")[0], 200)
        self.assertEqual(self.gw.admin("/readyz")[0], 200)

    def test_metrics(self):
        status, headers, body = self.gw.admin("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        m = harness.Metrics(body.decode())
        self.assertTrue(m.samples, "no samples")
        series = {l.get("name"): v for l, v in m.series("inference_pool_ready_pods")}
        self.assertEqual(series.get("default/llama", series.get("llama")), 2, series)
        for name in ("infergate_upstream_retries_total", "infergate_client_aborts_total"):
            self.assertTrue(m.has(name), f"{name} missing:\n{m.text[:2000]}")

    def test_debug_endpoints(self):
        eps = self.gw.admin_json("/debug/endpoints")["endpoints"]
        self.assertEqual(sorted(e["name"] for e in eps), ["pod-a", "pod-b"])
        for e in eps:
            for key in ("name", "address", "pool", "ready", "in_flight", "requests_total",
                        "failures_total", "labels"):
                self.assertIn(key, e)
            self.assertEqual(e["in_flight"], 0)
            self.assertEqual(e["labels"]["app"], "llama")
        by_name = {e["name"]: e for e in eps}
        self.assertEqual(by_name["pod-a"]["address"], "127.0.0.1:9")
        self.assertEqual(by_name["pod-b"]["labels"].get("zone"), "b")

    def test_debug_config(self):
        doc = self.gw.admin_json("/debug/config")
        text = json.dumps(doc)
        for word in ("food-review", "fr-1", "pod-a", "llama"):
            self.assertIn(word, text)

    def test_unknown_admin_path_and_method(self):
        self.assertEqual(self.gw.admin("/nope")[0], 404)
        self.assertEqual(self.gw.admin("/healthz", method="POST")[0], 405)


class LifeCycleTest(GatewayTestCase):

    def test_sigterm_when_idle_exits_0(self):
        gw = self.gateway(basic_config())
        status, _, body = gw.admin("/readyz")
        self.assertEqual(status, 200, body)
        status, _, _ = gw.admin("/healthz")
        self.assertEqual(status, 200)
        gw.expect_exit = True
        gw.signal(signal.SIGTERM)
        self.assertEqual(gw.wait(10), 0, gw.log_tail())

    def test_sigint_exits_0(self):
        gw = self.gateway(basic_config())
        gw.expect_exit = True
        gw.signal(signal.SIGINT)
        self.assertEqual(gw.wait(10), 0, gw.log_tail())

    def test_sighup_reloads_and_keeps_old_config_when_invalid(self):
        gw = self.gateway(basic_config(models=("food-review",)))

        def model_ids():
            return {m["id"] for m in harness.curl(gw.url("/v1/models")).json()["data"]}

        self.assertEqual(model_ids(), {"food-review"})
        before = gw.metrics().get("infergate_config_reloads_total", result="success")

        gw.write_config(basic_config(models=("food-review", "chat-bot")))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: model_ids() == {"food-review", "chat-bot"}, 5,
                   message="the reloaded model list")
        wait_until(lambda: gw.metrics().get("infergate_config_reloads_total", result="success")
                   == before + 1, 5, message="a successful reload counted")

        # An invalid file: the running configuration stays, the failure is counted and logged.
        gw.write_config(BAD_CONFIG)
        gw.signal(signal.SIGHUP)
        wait_until(lambda: gw.metrics().get("infergate_config_reloads_total", result="failure")
                   == 1, 5, message="a failed reload counted")
        self.assertEqual(model_ids(), {"food-review", "chat-bot"})
        status, _, _ = gw.admin("/readyz")
        self.assertEqual(status, 200)
        self.assertRegex(gw.stderr_text(), r"\.yaml:11:\d+: ")


if __name__ == "__main__":
    harness.main(needs_sim=False)
