"""Packaging checks: what can be checked without a Docker engine or a Kubernetes cluster.

- examples/docker-compose/docker-compose.yaml parses with Debian's docker-compose (v1)
  (`docker-compose config`), and its services' command lines run as plain processes: the
  three infergate-sim "pods" and the gateway with the compose config adapted to 127.0.0.1
  (the shared DNS name `vllm` becomes the three sims' addresses), serving one chat completion.
- examples/kubernetes/*.yaml parse; the ConfigMap's embedded configuration passes
  `infergate --check`; probes, RBAC and pool labels agree with it.
- The Dockerfile's final stage installs a Debian package for every shared library the
  binaries link (ldd + dpkg -S), runs as non-root, exposes the ports, has a HEALTHCHECK.
- The Grafana dashboard is valid JSON and only queries metric names the gateway defines.
Nothing here builds or runs an image: docs/deploy.md says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

try:
    import yaml
except ImportError:  # python3-yaml (scripts/install-deps.sh)
    yaml = None

REPO = harness.REPO
COMPOSE = REPO / "examples" / "docker-compose" / "docker-compose.yaml"
COMPOSE_CONFIG = REPO / "examples" / "docker-compose" / "infergate.yaml"
K8S = REPO / "examples" / "kubernetes"
DASHBOARD = REPO / "examples" / "docker-compose" / "grafana" / "dashboards" / "infergate.json"


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


@unittest.skipIf(yaml is None, "python3-yaml is not installed")
class PackagingTest(unittest.TestCase):
    def compose(self) -> dict:
        return yaml.safe_load(COMPOSE.read_text())

    def test_docker_compose_config_parses(self):
        exe = shutil.which("docker-compose")
        if exe is None:
            self.skipTest("docker-compose (Debian package) is not installed")
        r = run([exe, "-f", str(COMPOSE), "config"])
        self.assertEqual(r.returncode, 0, r.stderr)
        cfg = yaml.safe_load(r.stdout)
        services = cfg["services"]
        for name in ("sim-0", "sim-1", "sim-2"):
            self.assertIn("vllm", services[name]["networks"]["default"]["aliases"])
        published = {str(p.get("published", p.get("target"))) if isinstance(p, dict)
                     else str(p).split(":")[0] for p in services["infergate"]["ports"]}
        self.assertTrue({"8080", "9090"} <= published, published)
        self.assertEqual(services["prometheus"]["profiles"], ["monitoring"])
        self.assertEqual(services["grafana"]["profiles"], ["monitoring"])
        r = run([exe, "-f", str(COMPOSE), "--profile", "monitoring", "config", "--services"])
        if r.returncode == 0:  # --profile needs docker-compose >= 1.28
            self.assertIn("grafana", r.stdout.split())

    def test_compose_gateway_config_passes_check(self):
        r = run([harness.GATEWAY_BIN, "--check", "--config", str(COMPOSE_CONFIG)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        docs = list(yaml.safe_load_all(COMPOSE_CONFIG.read_text()))
        proxy = next(d for d in docs if d["kind"] == "ProxyConfig")
        self.assertEqual([e["address"] for e in proxy["spec"]["endpoints"]], ["vllm"])

    def test_compose_services_run_as_processes(self):
        compose = self.compose()
        procs: list[harness.ManagedProcess] = []
        tmp = tempfile.TemporaryDirectory()
        try:
            addresses = []
            for name in ("sim-0", "sim-1", "sim-2"):
                argv = list(compose["services"][name]["command"])
                argv[argv.index("--host") + 1] = "127.0.0.1"
                argv[argv.index("--port") + 1] = "0"
                p = harness.ManagedProcess(name, [harness.SIM_BIN, *argv, "--ttft-ms", "1",
                                                  "--itl-ms", "1", "--output-tokens", "4"])
                procs.append(p)
                m = p.wait_for_line(r"infergate-sim listening on (\S+):(\d+)", tag="out")
                addresses.append(f"127.0.0.1:{m.group(2)}")

            docs = list(yaml.safe_load_all(COMPOSE_CONFIG.read_text()))
            proxy = next(d for d in docs if d["kind"] == "ProxyConfig")
            spec = proxy["spec"]
            spec["listeners"] = [{"address": "127.0.0.1:0"}]
            spec["admin"] = {"address": "127.0.0.1:0"}
            [vllm] = spec["endpoints"]
            spec["endpoints"] = [{"name": f"vllm-{i}", "address": a, "labels": vllm["labels"]}
                                 for i, a in enumerate(addresses)]
            config = Path(tmp.name) / "infergate.yaml"
            config.write_text(yaml.safe_dump_all(docs))
            argv = list(compose["services"]["infergate"]["command"])
            argv[argv.index("--config") + 1] = str(config)
            gw = harness.ManagedProcess("gateway", [harness.GATEWAY_BIN, *argv])
            procs.append(gw)
            port = int(gw.wait_for_line(r'listener ready.*?address\W+[^\s"]+:(\d+)',
                                        tag="err").group(1))
            admin = int(gw.wait_for_line(r'admin ready.*?address\W+[^\s"]+:(\d+)',
                                         tag="err").group(1))
            status, _, _ = harness.http_request(admin, "GET", "/healthz")
            self.assertEqual(status, 200)
            harness.wait_until(lambda: harness.http_request(admin, "GET", "/readyz")[0] == 200,
                               10, message="/readyz")
            body = json.dumps(harness.chat("meta-llama/Llama-3.1-8B-Instruct")).encode()
            status, _, resp = harness.http_request(
                port, "POST", "/v1/chat/completions", body=body,
                headers={"Content-Type": "application/json"})
            self.assertEqual(status, 200, resp[:300])
            self.assertEqual(json.loads(resp)["model"], "meta-llama/Llama-3.1-8B-Instruct")
        finally:
            for p in reversed(procs):
                p.stop()
                if p.crashed():
                    sys.stderr.write(p.log_tail())
            tmp.cleanup()

    def k8s_docs(self) -> list[dict]:
        docs = []
        for f in sorted(K8S.glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
        return docs

    def test_kubernetes_manifests(self):
        docs = self.k8s_docs()
        kinds = sorted(d["kind"] for d in docs)
        for k in ("ConfigMap", "Deployment", "Namespace", "Role", "RoleBinding", "Service",
                  "ServiceAccount"):
            self.assertIn(k, kinds)
        role = next(d for d in docs if d["kind"] == "Role")
        pods_rule = next(r for r in role["rules"] if "pods" in r["resources"])
        self.assertTrue({"list", "watch"} <= set(pods_rule["verbs"]))

        cm = next(d for d in docs if d["kind"] == "ConfigMap")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "infergate.yaml"
            path.write_text(cm["data"]["infergate.yaml"])
            r = run([harness.GATEWAY_BIN, "--check", "--config", str(path)])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        embedded = list(yaml.safe_load_all(cm["data"]["infergate.yaml"]))
        proxy = next(d for d in embedded if d["kind"] == "ProxyConfig")
        pool = next(d for d in embedded if d["kind"] == "InferencePool")
        admin_port = int(proxy["spec"]["admin"]["address"].rsplit(":", 1)[1])

        gw = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "infergate")
        pod = gw["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "infergate")
        c = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports["admin"], admin_port)
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])

        vllm = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "infergate")
        labels = vllm["spec"]["template"]["metadata"]["labels"]
        for k, v in pool["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v)
        self.assertIn("inference.networking.k8s.io/engine-type", labels)
        self.assertEqual(vllm["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
                         pool["spec"]["targetPorts"][0]["number"])

    def test_dockerfile_runtime_stage(self):
        text = (REPO / "Dockerfile").read_text()
        final = text[text.rindex("\nFROM "):]
        self.assertIn("bookworm", final)
        self.assertRegex(final, r"\nUSER (?!root|0\b)\S+")
        self.assertIn("EXPOSE 8080 9090", final)
        self.assertRegex(final, r"HEALTHCHECK .*\n?.*9090/healthz")
        self.assertNotIn("-dev", re.sub(r"#.*", "", final))
        if shutil.which("dpkg") is None or shutil.which("ldd") is None:
            self.skipTest("no dpkg/ldd: library check skipped")
        installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", final.split("apt-get install", 1)[1]
                                   .split("&&", 1)[0]))
        base = {"libc6", "libgcc-s1"}  # in every Debian image
        for binary in (harness.GATEWAY_BIN, harness.SIM_BIN):
            r = run(["ldd", binary])
            for lib in re.findall(r"^\s*(\S+\.so\S*) =>", r.stdout, re.M):
                owner = run(["dpkg", "-S", f"*/{lib}"]).stdout.split(":", 1)[0].strip()
                if not owner or owner in base or "i386" in owner:
                    continue
                self.assertIn(owner, installed, f"{binary} needs {lib} from {owner}")

    def test_grafana_dashboard_queries_known_metrics(self):
        dash = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        self.assertGreater(len(exprs), 10)
        source = "".join((REPO / f).read_text() for f in
                         ("metrics/gateway_metrics.cpp", "proxy/scraper.cpp"))
        defined = set(re.findall(r'\.Name\("([a-z_:]+)"\)', source))
        for e in exprs:
            for name in re.findall(r"\b((?:infergate|inference)_[a-z_]+)", e):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                self.assertIn(base, defined, f"dashboard queries unknown metric {name}")


if __name__ == "__main__":
    harness.main()
