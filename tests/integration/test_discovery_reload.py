#!/usr/bin/env python3
"""Issue 7 §1-2: hot reload on a config file change (inotify, editors that replace the file,
invalid files kept out) under continuous load, and DNS discovery: a static endpoint whose
address is a name stands for every address of that name (here through the hosts-file override),
endpoints appear and disappear as the records change, and requests in flight to a removed
endpoint complete."""

import http.client
import json
import os
import threading

import harness
from harness import (CurlStream, GatewayTestCase, chat, endpoint, inference_model, inference_pool,
                     proxy_config, render, wait_until)


class LoadLoop:
    """Keep-alive clients sending chat completions until stopped; records every status."""

    def __init__(self, port: int, model: str, threads: int = 2):
        self.port, self.model = port, model
        self.statuses: list[int] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        body = json.dumps(chat(self.model, max_tokens=2)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                data = res.read()
                with self.lock:
                    self.statuses.append(res.status)
                    if res.status != 200:
                        self.failures.append(f"{res.status} {data[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(f"exception {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def count(self) -> int:
        with self.lock:
            return len(self.statuses)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


class ReloadUnderLoadTest(GatewayTestCase):

    def config(self, targets: list[tuple[str, int]]) -> str:
        return render([
            proxy_config([endpoint("pod-a", self.pod_a.address),
                          endpoint("pod-b", self.pod_b.address)]),
            inference_pool("llama"),
            inference_model("chat", "llama", targets=targets),
        ])

    def test_file_changes_reload_without_failing_requests(self):
        self.pod_a = self.sim(pod_name="pod-a", served=["m1", "m2"])
        self.pod_b = self.sim(pod_name="pod-b", served=["m1", "m2"])
        gw = self.gateway(self.config([("m1", 1)]))
        load = LoadLoop(gw.port, "chat")
        try:
            wait_until(lambda: load.count() >= 20, timeout=10, message="load is flowing")

            # 1. A valid change, written the way editors do (new file renamed over the old).
            gw.write_config(self.config([("m2", 1)]))
            wait_until(lambda: gw.metrics().get("infergate_config_reloads_total",
                                                result="success") >= 2,
                       timeout=10, message="file change reloaded")
            seen_before = len(self.pod_a.v1_requests()) + len(self.pod_b.v1_requests())
            wait_until(lambda: any(json.loads(r["body"])["model"] == "m2"
                                   for r in (self.pod_a.v1_requests() + self.pod_b.v1_requests())),
                       timeout=10, message="new target in use")
            self.assertGreater(seen_before, 0)

            # 2. An invalid file: the running configuration stays, the failure is counted.
            with open(gw.config_path, "w") as f:
                f.write("apiVersion: infergate.io/v1alpha1\nkind: ProxyConfig\nspec: [oops\n")
            wait_until(lambda: gw.metrics().get("infergate_config_reloads_total",
                                                result="failure") >= 1,
                       timeout=10, message="invalid file rejected")
            n = load.count()
            wait_until(lambda: load.count() >= n + 20, timeout=10,
                       message="requests still served on the old configuration")

            # 3. Valid again (in place this time).
            with open(gw.config_path, "w") as f:
                f.write(self.config([("m1", 1)]))
            wait_until(lambda: gw.metrics().get("infergate_config_reloads_total",
                                                result="success") >= 3,
                       timeout=10, message="valid file reloaded")
            n = load.count()
            wait_until(lambda: load.count() >= n + 20, timeout=10, message="load continues")
        finally:
            load.finish()
        self.assertEqual(load.failures, [], "requests failed during reloads")
        self.assertGreater(load.count(), 60)
        self.assertIn("configuration reload failed", gw.stderr_text())


class DnsDiscoveryTest(GatewayTestCase):

    def write_hosts(self, path: str, ips: list[str]) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("# test resolver override\n")
            for ip in ips:
                f.write(f"{ip} vllm.test\n")
        os.replace(tmp, path)

    def test_endpoints_follow_the_records(self):
        # Three pods on the same port, on three loopback addresses: one name, three records.
        # --itl-ms 20: the in-flight stream below lasts ~1 s, long enough to remove its record.
        first = self.sim("--itl-ms", "20", pod_name="pod-1")
        port = first.port
        second = self.sim("--host", "127.0.0.2", "--port", str(port), "--itl-ms", "20",
                          pod_name="pod-2")
        third = self.sim("--host", "127.0.0.3", "--port", str(port), "--itl-ms", "20",
                         pod_name="pod-3")
        hosts = os.path.join(self.tmp(), "hosts")
        self.write_hosts(hosts, ["127.0.0.1"])
        cfg = proxy_config([endpoint("vllm", f"vllm.test:{port}")],
                           scheduler={"profile": "round-robin"})
        cfg["spec"]["discovery"] = {"dns": {"interval": "100ms", "hostsFile": hosts}}
        gw = self.gateway([cfg, inference_pool("llama")])

        def names():
            return sorted(gw.endpoints().keys())

        wait_until(lambda: names() == ["vllm@127.0.0.1"], timeout=10, message="one record")
        self.write_hosts(hosts, ["127.0.0.1", "127.0.0.2", "127.0.0.3"])
        wait_until(lambda: len(names()) == 3, timeout=10, message="three records")
        self.assertEqual(names(), ["vllm@127.0.0.1", "vllm@127.0.0.2", "vllm@127.0.0.3"])

        pods = set()
        for _ in range(12):
            r = harness.curl(gw.url("/v1/chat/completions"), chat("test-model", max_tokens=1))
            self.assertEqual(r.status, 200, str(r))
            pods.add(r.headers.get("x-sim-pod"))
        self.assertEqual(pods, {"pod-1", "pod-2", "pod-3"})

        # A stream in flight to one pod while that pod's record disappears still completes.
        stream = CurlStream(gw.url("/v1/chat/completions"),
                            chat("test-model", stream=True, max_tokens=40, ignore_eos=True))
        stream.wait_for_data(1, timeout=10)
        sims = {"127.0.0.1": first, "127.0.0.2": second, "127.0.0.3": third}
        busy = wait_until(lambda: [ip for ip, s in sims.items() if s.stats()["active"] == 1],
                          timeout=10, message="the stream's pod")
        removed = busy[0]
        kept = [ip for ip in sims if ip != removed]
        self.write_hosts(hosts, kept)
        wait_until(lambda: len(names()) == 2, timeout=10, message="record removed")
        result = stream.wait(timeout=30)
        self.assertTrue(result.done, f"in-flight stream did not complete: {result}")
        self.assertEqual(sims[removed].stats()["aborted_total"], 0)

        served = set()
        for _ in range(8):
            r = harness.curl(gw.url("/v1/chat/completions"), chat("test-model", max_tokens=1))
            self.assertEqual(r.status, 200, str(r))
            served.add(r.headers.get("x-sim-pod"))
        self.assertEqual(served, {sims[ip].pod_name for ip in kept})


if __name__ == "__main__":
    harness.main()
