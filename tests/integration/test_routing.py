#!/usr/bin/env python3
"""Routing (SPEC §3): weighted target draw, pools chosen by poolRef, InferenceModelRewrite rules,
fewest-in-flight picking, pool gauges."""

import http.client
import json
import math
import threading
from collections import Counter

import harness
from harness import (CurlStream, GatewayTestCase, chat, completion, curl, endpoint,
                     inference_model, inference_pool, proxy_config, wait_until)


def rewrite_doc(name: str, pool: str, match: str, targets: list[tuple[str, int]]) -> dict:
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceModelRewrite", "metadata": {"name": name},
            "spec": {"poolRef": {"name": pool},
                     "rules": [{"matches": [{"model": {"type": "Exact", "value": match}}],
                                "targets": [{"modelRewrite": t, "weight": w} for t, w in targets]}]}}


class WeightedSplitTest(GatewayTestCase):

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim("--time-scale", "0", pod_name="pod-w",
                                served=["food-review-1", "food-review-2"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("pod-w", cls.pod.address)]),
            inference_pool("llama"),
            inference_model("food-review", "llama",
                            targets=[("food-review-1", 90), ("food-review-2", 10)]),
        ])

    def run_batch(self, n: int, threads: int = 4) -> list[tuple[int, str]]:
        """n requests over `threads` keep-alive connections; returns (status, model) each."""
        out: list[tuple[int, str]] = []
        lock = threading.Lock()
        body = json.dumps(completion("food-review", max_tokens=1)).encode()

        def worker(count: int):
            conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
            try:
                for _ in range(count):
                    conn.request("POST", "/v1/completions", body=body,
                                 headers={"Content-Type": "application/json"})
                    res = conn.getresponse()
                    data = res.read()
                    model = json.loads(data).get("model") if res.status == 200 else data.decode()
                    with lock:
                        out.append((res.status, model))
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return out

    def test_weighted_split_90_10(self):
        total, rounds = 400, 4
        seen = Counter()
        m0 = self.gw.metrics()
        for _ in range(rounds):
            self.pod.reset()
            results = self.run_batch(total // rounds)
            self.assertEqual(len(results), total // rounds)
            for status, model in results:
                self.assertEqual(status, 200, model)
                self.assertEqual(model, "food-review", "the response model is the client's name")
            # What the pod saw (the log holds the last 200 requests; a round is 100).
            reqs = self.pod.v1_requests()
            self.assertEqual(len(reqs), total // rounds)
            seen.update(json.loads(r["body"])["model"] for r in reqs)
        self.assertEqual(set(seen) - {"food-review-1", "food-review-2"}, set(), seen)
        self.assertEqual(sum(seen.values()), total)
        # Binomial(400, 0.1): mean 40, sigma 6; 5 sigma -> [10, 70].
        n2 = seen["food-review-2"]
        mean, sigma = total * 0.1, math.sqrt(total * 0.1 * 0.9)
        self.assertLessEqual(abs(n2 - mean), 5 * sigma, f"food-review-2 got {n2} of {total}")
        # The gateway's own counters agree with what the pod saw.
        m1 = self.gw.metrics()
        for target in ("food-review-1", "food-review-2"):
            delta = (m1.get("inference_objective_request_total", model_name="food-review",
                            target_model_name=target)
                     - m0.get("inference_objective_request_total", model_name="food-review",
                              target_model_name=target))
            self.assertEqual(delta, seen[target], target)


class PoolsTest(GatewayTestCase):
    """Two pools: models go to the pool of their poolRef; InferenceModelRewrite rules; several
    pools and an unknown model is a 404 (no pass-through)."""

    @classmethod
    def start_class_fixtures(cls):
        cls.a1 = cls.class_sim("--ttft-ms", "1500", pod_name="a-1", served=["llama-8b", "shared"])
        cls.a2 = cls.class_sim("--ttft-ms", "1500", pod_name="a-2", served=["llama-8b", "shared"])
        cls.b = cls.class_sim(pod_name="b-1", served=["mistral-7b", "shared", "rewritten"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("a-1", cls.a1.address, app="a"),
                          endpoint("a-2", cls.a2.address, app="a"),
                          endpoint("b-1", cls.b.address, app="b")],
                         scheduler={"profile": "least-request"}),
            inference_pool("pool-a", app="a"),
            inference_pool("pool-b", app="b"),
            inference_model("llama", "pool-a", targets=[("llama-8b", 1)]),
            inference_model("mistral", "pool-b", targets=[("mistral-7b", 1)]),
            rewrite_doc("rw", "pool-b", "old-name", [("rewritten", 1)]),
            {"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
             "kind": "InferenceObjective", "metadata": {"name": "batch-jobs"},
             "spec": {"priority": 7, "poolRef": {"name": "pool-b"}}},
        ])

    def test_objective_header_sets_the_priority(self):
        def count(priority):
            return self.gw.metrics().get("inference_objective_request_total",
                                         model_name="mistral", priority=priority)

        p1, p7 = count("1"), count("7")
        res = curl(self.gw.url("/v1/completions"), body=completion("mistral"))
        self.assertEqual(res.status, 200, str(res))
        res = curl(self.gw.url("/v1/completions"), body=completion("mistral"),
                   headers={"x-gateway-inference-objective": "batch-jobs"})
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(count("1"), p1 + 1, "criticality Critical is priority 1")
        self.assertEqual(count("7"), p7 + 1, "the objective's priority")

    def test_model_goes_to_its_pool(self):
        for _ in range(4):
            res = curl(self.gw.url("/v1/completions"), body=completion("mistral"))
            self.assertEqual(res.status, 200, str(res))
            self.assertEqual(res.headers.get("x-sim-pod"), "b-1")
            self.assertEqual(res.json()["model"], "mistral")

    def test_model_rewrite_rule(self):
        self.b.reset()
        res = curl(self.gw.url("/v1/chat/completions"), body=chat("old-name"))
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.headers.get("x-sim-pod"), "b-1")
        self.assertEqual(res.json()["model"], "old-name")
        self.assertEqual(json.loads(self.b.v1_requests()[-1]["body"])["model"], "rewritten")

    def test_unknown_model_with_several_pools_is_404(self):
        res = curl(self.gw.url("/v1/completions"), body=completion("shared"))
        self.assertOpenAIError(res, 404, code="model_not_found")

    def test_models_list_has_every_configured_name(self):
        ids = {m["id"] for m in curl(self.gw.url("/v1/models")).json()["data"]}
        self.assertTrue({"llama", "mistral"} <= ids, ids)

    def test_ready_pods_gauge(self):
        m = self.gw.metrics()
        series = {l.get("name"): v for l, v in m.series("inference_pool_ready_pods")}
        self.assertEqual(series.get("default/pool-a", series.get("pool-a")), 2, series)
        self.assertEqual(series.get("default/pool-b", series.get("pool-b")), 1, series)

    def test_fewest_in_flight_spreads_concurrent_requests(self):
        # The pods of pool-a take 1.5s to the first token; while requests are in flight the
        # picker must send the next one to the endpoint with fewer of them (ties: random).
        streams = []
        try:
            for n in range(1, 5):
                streams.append(CurlStream(self.gw.url("/v1/chat/completions"),
                                          chat("llama", stream=True, max_tokens=1)))
                wait_until(lambda: self.gw.total_in_flight() == n, 3,
                           message=f"{n} request(s) in flight")
                eps = self.gw.endpoints()
                counts = sorted([eps["a-1"]["in_flight"], eps["a-2"]["in_flight"]])
                self.assertEqual(counts, [n // 2, n - n // 2], eps)
            results = [s.wait(20) for s in streams]
        finally:
            for s in streams:
                s.kill()
        pods = Counter(r.headers.get("x-sim-pod") for r in results)
        self.assertEqual(pods, Counter({"a-1": 2, "a-2": 2}), [str(r) for r in results])
        for r in results:
            self.assertTrue(r.done(), str(r))
        wait_until(lambda: self.gw.total_in_flight() == 0, 3, message="in_flight back to 0")


if __name__ == "__main__":
    harness.main()
