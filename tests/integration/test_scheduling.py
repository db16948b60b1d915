#!/usr/bin/env python3
"""Scheduling through the real binaries (docs/scheduling.md): the profiles pick endpoints from
the scraped engine metrics (least load, LoRA affinity, prefix affinity), admission sheds
sheddable requests while the pool is saturated, flow control queues the others in priority
order, the debug header explains the decision, and the simple profiles spread as they say.

The simulators' reported load is fixed with --metrics-* / POST /sim/metrics; a test waits until
the gateway's scraper has seen the values (/debug/endpoints) before it sends anything. Where a
test needs the `default` profile to see a fresh scrape (no since-scrape correction), it waits
for the gateway's dispatched_since_scrape to return to 0: polling, never sleeping."""

import json
import threading
import time
from collections import Counter
from typing import Any, Callable

import harness
from harness import (CurlStream, GatewayTestCase, completion, curl, endpoint, inference_model,
                     inference_pool, proxy_config, wait_until)

SCRAPE_FRESH = 0.15  # seconds: a sample younger than this is one the scheduler uses as fresh


def objective(name: str, pool: str, priority: int) -> dict:
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceObjective", "metadata": {"name": name},
            "spec": {"priority": priority, "poolRef": {"name": pool}}}


def pool_key(pool: str) -> str:
    return pool if "/" in pool else f"default/{pool}"


def wait_seen(gw, pool: str, expect: dict[str, dict[str, Any]], timeout: float = 5.0) -> dict:
    """Waits until the gateway's latest scrape of each named endpoint of `pool` was taken after
    this call (so after the caller's last change to the simulators: a scrape from before it may
    show the wanted values and be followed by one from an intermediate state), is fresh and ok,
    and shows the wanted values (keys of /debug/endpoints' "metrics": waiting, kv_cache_usage,
    running_lora_adapters, ...). Returns the pool's endpoints.

    The gateway's clock (steady_clock) and time.monotonic() are both CLOCK_MONOTONIC: a sample
    of age A read by a request sent at T was scraped at or after T - A."""
    since = time.monotonic()
    last: dict = {}

    def check():
        nonlocal last
        sent = time.monotonic()
        last = gw.pool_endpoints(pool)
        for name, want in expect.items():
            m = last[name]["metrics"]
            if not m or not m["ok"] or not 0 <= m["age_seconds"] < SCRAPE_FRESH:
                return False
            if sent - m["age_seconds"] - 0.001 <= since:  # age is printed to the ms
                return False
            for k, v in want.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    if abs(float(m[k]) - float(v)) > 1e-9:
                        return False
                elif m[k] != v:
                    return False
        return last

    try:
        return wait_until(check, timeout, message=f"pool {pool} scraped as {expect}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last /debug/endpoints: {json.dumps(last)}") from None


def wait_fresh(gw, pool: str, timeout: float = 3.0) -> None:
    """Waits until every endpoint of `pool` was scraped after the last request sent to it (its
    dispatched_since_scrape is 0), so that the `default` profile's since-scrape correction does
    not move the next pick."""
    wait_until(lambda: all(e["dispatched_since_scrape"] == 0 and e["metrics"]
                           and e["metrics"]["ok"]
                           for e in gw.pool_endpoints(pool).values()),
               timeout, message=f"a fresh scrape of pool {pool}")


class Background:
    """Runs fn() in a thread; .result() joins and returns its value (or raises its error)."""

    def __init__(self, fn: Callable[[], Any]):
        self._value: Any = None
        self._error: BaseException | None = None
        self.finished_at: float | None = None
        self.started_at = time.monotonic()

        def run():
            try:
                self._value = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in result()
                self._error = e
            self.finished_at = time.monotonic()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("background request did not finish")
        if self._error:
            raise self._error
        return self._value


# ------------------------------------------------------------------------------------------
# Profiles over one fleet: least load, prefix affinity, debug header, simple profiles


class ProfilesTest(GatewayTestCase):
    """Three pods; one pool per profile, all selecting the same three pods (each pool member
    has its own counters and prefix-index slot). Model m-PROFILE goes to pool p-PROFILE."""

    PROFILES = ("default", "gie-default", "round-robin", "random", "least-request")
    PODS = ("pod-a", "pod-b", "pod-c")

    @classmethod
    def start_class_fixtures(cls):
        cls.sims = {name: cls.class_sim(pod_name=name, served=["m"]) for name in cls.PODS}
        docs = [proxy_config(
            [endpoint(name, s.address) for name, s in cls.sims.items()], workers=1,
            scheduler={"profile": "default", "debugHeader": True,
                       "pools": [{"name": f"p-{p}", "profile": p} for p in cls.PROFILES
                                 if p != "default"]})]
        for p in cls.PROFILES:
            docs.append(inference_pool(f"p-{p}", app="llama"))
            docs.append(inference_model(f"m-{p}", f"p-{p}", targets=[("m", 1)]))
        cls.gw = cls.class_gateway(docs)

    def setUp(self):
        super().setUp()
        for s in self.sims.values():
            s.set_metrics(waiting=None, running=None, kv_usage=None)
        self.addCleanup(self._clear_overrides)
        for p in self.PROFILES:
            wait_seen(self.gw, f"p-{p}", {n: {"waiting": 0} for n in self.PODS})

    def _clear_overrides(self):
        for s in self.sims.values():
            s.set_metrics(waiting=None, running=None, kv_usage=None)

    def send(self, profile: str, prompt: str = "Hello there", headers=None, **extra):
        res = curl(self.gw.url("/v1/completions"),
                   body=completion(f"m-{profile}", prompt, max_tokens=1, **extra),
                   headers=headers)
        self.assertEqual(res.status, 200, str(res))
        self.assertIn(res.headers.get("x-sim-pod"), self.PODS, str(res))
        return res

    def decisions(self, profile: str) -> Counter:
        m = self.gw.metrics()
        return Counter({l["reason"]: v for l, v in m.series("infergate_scheduling_decisions_total")
                        if l.get("pool") == pool_key(f"p-{profile}")})

    # ---- 1. least load

    def load_one_idle(self) -> str:
        idle = "pod-b"
        for name, s in self.sims.items():
            if name == idle:
                s.set_metrics(waiting=0, kv_usage=0.1)
            else:
                s.set_metrics(waiting=4, kv_usage=0.7)
        for p in ("default", "gie-default"):
            wait_seen(self.gw, f"p-{p}", {
                n: {"waiting": 0 if n == idle else 4, "kv_cache_usage": 0.1 if n == idle else 0.7}
                for n in self.PODS})
        return idle

    def check_least_load(self, profile: str, n: int = 20, fresh: bool = False):
        idle = self.load_one_idle()
        pods = Counter()
        for i in range(n):
            if fresh:
                wait_fresh(self.gw, f"p-{profile}")
            pods[self.send(profile, f"least load {profile} {i}").headers["x-sim-pod"]] += 1
        self.assertGreater(pods[idle], 0.8 * n, f"{profile}: {pods}")
        return pods

    def test_least_load_default(self):
        self.check_least_load("default")

    def test_least_load_default_after_fresh_scrapes(self):
        # Each pick sees a scrape newer than the previous dispatch: no since-scrape correction
        # at all, the scraped figures alone decide.
        pods = self.check_least_load("default", n=10, fresh=True)
        self.assertEqual(pods, Counter({"pod-b": 10}))

    def test_least_load_gie_default(self):
        pods = self.check_least_load("gie-default")
        # No since-scrape correction: the same scraped numbers win every time.
        self.assertEqual(pods, Counter({"pod-b": 20}))

    # ---- 3. prefix affinity

    def check_prefix_affinity(self, profile: str, prompts: int = 8):
        first: dict[int, str] = {}
        for i in range(prompts):
            # Distinct from the first byte on (so from block 0), ~4 KiB each.
            text = f"{profile} prompt {i}: " + " ".join(f"w{i}-{j}" for j in range(600))
            text = text[:4096]
            r1 = self.send(profile, text)
            r2 = self.send(profile, text)
            first[i] = r1.headers["x-sim-pod"]
            self.assertEqual(r2.headers["x-sim-pod"], first[i],
                             f"{profile}: prompt {i} moved from {first[i]} to "
                             f"{r2.headers['x-sim-pod']}")
        self.assertGreater(len(set(first.values())), 1,
                           f"{profile}: every distinct prompt went to one pod: {first}")
        self.assertGreaterEqual(self.decisions(profile).get("prefix_affinity", 0), 1)

    def test_prefix_affinity_default(self):
        self.check_prefix_affinity("default")

    def test_prefix_affinity_gie_default(self):
        self.check_prefix_affinity("gie-default")

    def test_prefix_affinity_shows_in_the_trace(self):
        text = "trace prompt: " + "abcdefgh" * 512  # 4 KiB
        self.send("default", text)
        res = self.send("default", text, headers={"x-infergate-debug": "scheduling"})
        trace = json.loads(res.headers["x-infergate-scheduling"])
        self.assertEqual(trace["winner"], res.headers["x-sim-pod"], trace)
        self.assertEqual(trace["prefix_block_bytes"], 64, trace)  # 16-token blocks x 4 bytes
        total = trace["prefix_total_blocks"]
        self.assertGreaterEqual(total, 64, trace)
        by_name = {c["endpoint"]: c for c in trace["candidates"]}
        self.assertEqual(by_name[trace["winner"]]["prefix_blocks"], total, trace)
        self.assertEqual(by_name[trace["winner"]]["scores"]["prefix_cache"], 1, trace)
        self.assertEqual(trace["reason"], "prefix_affinity", trace)

    # ---- 6. debug header

    def test_debug_header_only_when_asked(self):
        res = self.send("default")
        self.assertNotIn("x-infergate-scheduling", res.headers, str(res))
        res = self.send("default", headers={"x-infergate-debug": "something-else"})
        self.assertNotIn("x-infergate-scheduling", res.headers, str(res))

    def test_debug_header_names_the_winner(self):
        idle = self.load_one_idle()
        wait_fresh(self.gw, "p-default")
        for profile in ("default", "gie-default"):
            res = self.send(profile, headers={"x-infergate-debug": "scheduling"})
            trace = json.loads(res.headers["x-infergate-scheduling"])
            self.assertEqual(trace["profile"], profile, trace)
            self.assertEqual(trace["status"], "picked", trace)
            self.assertEqual(trace["winner"], res.headers["x-sim-pod"], trace)
            self.assertEqual(trace["winner"], idle, trace)
            self.assertIn(trace["reason"], ("least_queue", "least_kv_cache"), trace)
            self.assertEqual({c["endpoint"] for c in trace["candidates"]}, set(self.PODS), trace)
            self.assertEqual(set(trace["weights"]),
                             {"queue", "kv_cache", "prefix_cache", "lora_affinity", "in_flight"})
            by_name = {c["endpoint"]: c for c in trace["candidates"]}
            self.assertEqual(max(by_name.values(), key=lambda c: c["total"])["endpoint"], idle)
            for name, c in by_name.items():
                self.assertNotIn("filtered", c, trace)
                self.assertAlmostEqual(c["kv_cache"], 0.1 if name == idle else 0.7, 3, trace)
                self.assertEqual(c["waiting"], 0 if name == idle else 4, trace)
        # The other profiles trace too.
        for profile, reason in (("round-robin", "round_robin"), ("random", "random"),
                                ("least-request", "least_request")):
            res = self.send(profile, headers={"x-infergate-debug": "scheduling"})
            trace = json.loads(res.headers["x-infergate-scheduling"])
            self.assertEqual((trace["profile"], trace["reason"]), (profile, reason), trace)
            self.assertEqual(trace["winner"], res.headers["x-sim-pod"], trace)

    # ---- 7. simple profiles

    def test_round_robin_is_exact(self):
        d0 = self.decisions("round-robin")
        pods = Counter(self.send("round-robin").headers["x-sim-pod"] for _ in range(30))
        self.assertEqual(pods, Counter({p: 10 for p in self.PODS}))
        d1 = self.decisions("round-robin")
        self.assertEqual(d1["round_robin"] - d0["round_robin"], 30, (d0, d1))

    def test_round_robin_ignores_load(self):
        self.load_one_idle()
        pods = Counter(self.send("round-robin").headers["x-sim-pod"] for _ in range(9))
        self.assertEqual(pods, Counter({p: 3 for p in self.PODS}))

    def test_random_hits_every_pod(self):
        d0 = self.decisions("random")
        pods = Counter(self.send("random").headers["x-sim-pod"] for _ in range(30))
        # P(a pod is missed) = 3 * (2/3)^30 ~ 1.6e-5.
        self.assertEqual(set(pods), set(self.PODS), pods)
        self.assertEqual(self.decisions("random")["random"] - d0["random"], 30)

    def test_least_request_spreads_in_flight(self):
        # Streams that stay in flight (~4 s of tokens each, killed at the end): each new one
        # goes to a pod with the fewest of them.
        streams = []
        body = completion("m-least-request", "hold", max_tokens=4000, ignore_eos=True,
                          stream=True)
        try:
            for n in range(1, 7):
                streams.append(CurlStream(self.gw.url("/v1/completions"), body, timeout=30))
                wait_until(lambda: sum(e["in_flight"] for e in
                                       self.gw.pool_endpoints("p-least-request").values()) == n,
                           5, message=f"{n} streams in flight")
                counts = sorted(e["in_flight"] for e in
                                self.gw.pool_endpoints("p-least-request").values())
                self.assertLessEqual(counts[-1] - counts[0], 1, counts)
            wait_until(lambda: sorted(s.stats()["active"] for s in self.sims.values()) == [2, 2, 2],
                       5, message="two streams running on every pod")
        finally:
            for s in streams:
                s.kill()
                s.wait(5)
        wait_until(lambda: self.gw.total_in_flight() == 0, 5, message="in_flight back to 0")
        wait_until(lambda: all(s.stats()["active"] == 0 for s in self.sims.values()), 5,
                   message="the pods aborted the streams")


class SlowScrapeTest(GatewayTestCase):
    """Load fixed by the simulators' flags; one scrape a second (staleness 10 s), so that a run
    of sequential requests falls between two scrapes."""

    @classmethod
    def start_class_fixtures(cls):
        cls.idle = cls.class_sim("--metrics-waiting", "0", "--metrics-kv-usage", "0.1",
                                 pod_name="pod-idle", served=["m"])
        cls.busy = [cls.class_sim("--metrics-waiting", "4", "--metrics-running", "3",
                                  "--metrics-kv-usage", "0.7", pod_name=f"pod-busy-{i}",
                                  served=["m"]) for i in (1, 2)]
        config = proxy_config([endpoint(s.pod_name, s.address) for s in [cls.idle, *cls.busy]],
                              workers=1, scheduler={"debugHeader": True})
        config["spec"]["modelServerMetrics"] = {"interval": "1s", "staleAfter": "10s"}
        cls.gw = cls.class_gateway([config, inference_pool("llama"), inference_model("m", "llama")])
        wait_until(lambda: all((e["metrics"] or {}).get("ok")
                               for e in cls.gw.pool_endpoints("llama").values()), 5,
                   message="a first scrape of every pod")

    def test_debug_endpoints_show_the_scraped_figures(self):
        eps = self.gw.pool_endpoints("llama")
        self.assertEqual(set(eps), {"pod-idle", "pod-busy-1", "pod-busy-2"})
        for name in ("pod-busy-1", "pod-busy-2"):
            m = eps[name]["metrics"]
            self.assertTrue(m["ok"], m)
            self.assertIsNone(m["error"], m)
            self.assertEqual((m["waiting"], m["running"]), (4, 3), m)
            self.assertAlmostEqual(m["kv_cache_usage"], 0.7, 9, m)
            self.assertEqual((m["block_size"], m["num_gpu_blocks"]), (16, 27800), m)
            self.assertEqual(m["consecutive_failures"], 0, m)
            self.assertGreaterEqual(m["age_seconds"], 0, m)
        m = eps["pod-idle"]["metrics"]
        self.assertEqual(m["waiting"], 0, m)
        self.assertAlmostEqual(m["kv_cache_usage"], 0.1, 9, m)

    def test_sequential_client_stays_on_the_idle_pod(self):
        # One request at a time, each answered before the next is sent: the gateway has
        # nothing in flight to the idle pod when it picks, and the engine has nothing queued
        # (--metrics-waiting 0). The pods that report 4 waiting and 70 % KV are worse
        # choices for every request, however many came before since the last scrape.
        n, lost = 20, []
        pods = Counter()
        for i in range(n):
            res = curl(self.gw.url("/v1/completions"),
                       body=completion("m", f"sequential {i}", max_tokens=1),
                       headers={"x-infergate-debug": "scheduling"})
            self.assertEqual(res.status, 200, str(res))
            pod = res.headers.get("x-sim-pod")
            pods[pod] += 1
            if pod != "pod-idle":
                trace = json.loads(res.headers["x-infergate-scheduling"])
                c = {c["endpoint"]: c for c in trace["candidates"]}["pod-idle"]
                lost.append(f"request {i}: pod-idle estimated waiting {c['waiting']} "
                            f"({c.get('filtered', 'not filtered')}, total {c['total']})")
        self.assertEqual(self.gw.total_in_flight(), 0)
        self.assertEqual(pods["pod-idle"], n,
                         f"{pods}; requests already answered still count as queued on the "
                         f"idle pod until the next scrape: " + "; ".join(lost[:4]))


class UnreadyEndpointTest(GatewayTestCase):

    def test_endpoint_with_failing_metrics_is_skipped(self):
        good = self.sim(pod_name="pod-good", served=["m"])
        broken = self.sim("--metrics-fail", pod_name="pod-broken", served=["m"])
        gw = self.gateway([proxy_config([endpoint("pod-good", good.address),
                                         endpoint("pod-broken", broken.address)],
                                        workers=1, scheduler={"profile": "round-robin"}),
                           inference_pool("llama"), inference_model("m", "llama")])
        wait_until(lambda: (gw.pool_endpoints("llama")["pod-broken"]["metrics"] or {})
                   .get("consecutive_failures", 0) >= 3, 5,
                   message="three failed scrapes of pod-broken")
        broken.reset()
        # Round-robin reads no metric, but never picks an endpoint that is not ready.
        pods = Counter(curl(gw.url("/v1/completions"), body=completion("m"))
                       .headers.get("x-sim-pod") for _ in range(6))
        self.assertEqual(pods, Counter({"pod-good": 6}))
        self.assertEqual(broken.stats()["requests_total"], 0)


class DebugHeaderOffTest(GatewayTestCase):

    def test_no_trace_unless_configured(self):
        pod = self.sim(pod_name="pod-x", served=["m"])
        gw = self.gateway([proxy_config([endpoint("pod-x", pod.address)], workers=1),
                           inference_pool("llama"), inference_model("m", "llama")])
        wait_seen(gw, "llama", {"pod-x": {}})
        res = curl(gw.url("/v1/completions"), body=completion("m"),
                   headers={"x-infergate-debug": "scheduling"})
        self.assertEqual(res.status, 200, str(res))
        self.assertEqual(res.headers.get("x-sim-pod"), "pod-x")
        self.assertNotIn("x-infergate-scheduling", res.headers, str(res))


# ------------------------------------------------------------------------------------------
# 2. LoRA affinity


class LoraAffinityTest(GatewayTestCase):
    """Two pods serving adapter sql-lora with one LoRA slot each. A long request for the
    adapter runs on `hot` (sent to it directly), so its vllm:lora_requests_info lists the adapter
    as running; `hot` also reports a higher KV usage than `cold`."""

    @classmethod
    def start_class_fixtures(cls):
        sims = [cls.class_sim("--max-loras", "1", "--itl-ms", "20", pod_name=name, model="base",
                              lora=["sql-lora"]) for name in ("lora-a", "lora-b")]
        cls.cold, cls.hot = sims
        pools = {"default": "p-default", "gie-legacy": "p-legacy", "gie-default": "p-gie"}
        docs = [proxy_config(
            [endpoint(s.pod_name, s.address) for s in sims], workers=1,
            scheduler={"debugHeader": True, "pools": [
                {"name": "p-legacy", "profile": "gie-legacy",
                 # 1: always the "adapter active" group (0.999 would flake once in ~100 runs).
                 "legacy": {"loraAffinityThreshold": 1}},
                {"name": "p-gie", "profile": "gie-default"}]})]
        for profile, pool in pools.items():
            docs.append(inference_pool(pool, app="llama"))
            docs.append(inference_model(f"sql-{profile}", pool, targets=[("sql-lora", 1)]))
        cls.gw = cls.class_gateway(docs)
        cls.pools = pools
        # The long request keeping the adapter running on `hot` (20 ms per token: 60 s).
        cls.stream = cls.class_resource(_Killer(CurlStream(
            cls.hot.url("/v1/completions"),
            {"model": "sql-lora", "prompt": "a long job", "max_tokens": 3000, "ignore_eos": True,
             "stream": True}, timeout=120)))
        cls.stream.stream.wait_for_data(2)
        # Fixed load figures (a request waiting for the next 20 ms engine step would otherwise
        # show up in a scrape now and then); the adapter sets stay live.
        cls.hot.set_metrics(waiting=0, kv_usage=0.3)
        # 0.15 lower on `cold`: 0.3 points of KV score, less than running vs free slot (0.4 with
        # weight 4 and loraFreeSlotScore 0.9), more than nothing for gie-default.
        cls.cold.set_metrics(waiting=0, kv_usage=0.15)
        for pool in pools.values():
            wait_seen(cls.gw, pool, {
                "lora-b": {"running_lora_adapters": ["sql-lora"], "kv_cache_usage": 0.3,
                           "waiting": 0, "max_lora": 1},
                "lora-a": {"running_lora_adapters": [], "kv_cache_usage": 0.15, "waiting": 0,
                           "max_lora": 1}},
                timeout=10)

    def send_adapter_requests(self, profile: str, n: int = 8) -> tuple[Counter, list[dict]]:
        pool = self.pools[profile]
        pods, traces = Counter(), []
        for i in range(n):
            wait_fresh(self.gw, pool)
            res = curl(self.gw.url("/v1/completions"),
                       body=completion(f"sql-{profile}", f"{profile} query {i}", max_tokens=1),
                       headers={"x-infergate-debug": "scheduling"})
            self.assertEqual(res.status, 200, str(res))
            pods[res.headers.get("x-sim-pod")] += 1
            traces.append(json.loads(res.headers["x-infergate-scheduling"]))
            self.assertEqual(traces[-1]["winner"], res.headers.get("x-sim-pod"), traces[-1])
        return pods, traces

    def test_default_prefers_the_pod_running_the_adapter(self):
        pods, traces = self.send_adapter_requests("default")
        self.assertEqual(pods, Counter({"lora-b": 8}), traces)
        for t in traces:
            self.assertEqual(t["reason"], "lora_affinity", t)
            by_name = {c["endpoint"]: c for c in t["candidates"]}
            self.assertEqual(by_name["lora-b"]["scores"]["lora_affinity"], 1, t)
            self.assertAlmostEqual(by_name["lora-a"]["scores"]["lora_affinity"], 0.9, 6, t)
        # The adapter really ran there, under its own name.
        models = [json.loads(r["body"])["model"] for r in self.hot.v1_requests()[-8:]]
        self.assertEqual(models, ["sql-lora"] * 8)

    def test_gie_legacy_prefers_the_pod_running_the_adapter(self):
        pods, traces = self.send_adapter_requests("gie-legacy")
        self.assertEqual(pods, Counter({"lora-b": 8}), traces)
        for t in traces:
            self.assertEqual(t["reason"], "legacy_tree", t)

    def test_gie_default_has_no_lora_scorer(self):
        # Contrast (docs/scheduling.md): GIE's default profile weighs KV usage only here.
        pods, traces = self.send_adapter_requests("gie-default")
        self.assertEqual(pods, Counter({"lora-a": 8}), traces)


class _Killer:
    def __init__(self, stream: CurlStream):
        self.stream = stream

    def close(self):
        self.stream.kill()
        self.stream.wait(5)


# ------------------------------------------------------------------------------------------
# 4. Shedding


class SheddingTest(GatewayTestCase):

    @classmethod
    def start_class_fixtures(cls):
        cls.pods = [cls.class_sim(pod_name=n, served=["m"]) for n in ("pod-1", "pod-2")]
        cls.broken = cls.class_sim("--metrics-fail", pod_name="pod-stale", served=["m"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint(p.pod_name, p.address) for p in cls.pods] +
                         [endpoint("pod-stale", cls.broken.address, app="stale")],
                         workers=2, scheduler={"retryAfterSeconds": 7}),
            inference_pool("llama"),
            inference_pool("stale"),
            inference_model("shed-m", "llama", targets=[("m", 1)], criticality="Sheddable"),
            inference_model("crit-m", "llama", targets=[("m", 1)], criticality="Critical"),
            inference_model("std-m", "llama", targets=[("m", 1)], criticality=None),
            inference_model("stale-shed", "stale", targets=[("m", 1)], criticality="Sheddable"),
            objective("batch", "llama", -1),
        ])

    def setUp(self):
        super().setUp()
        self.addCleanup(self.recover)

    def recover(self):
        for p in self.pods:
            p.set_metrics(waiting=None, running=None, kv_usage=None)
        wait_seen(self.gw, "llama", {p.pod_name: {"waiting": 0} for p in self.pods})

    def post(self, model: str, headers=None):
        return curl(self.gw.url("/v1/completions"), body=completion(model, max_tokens=1),
                    headers=headers)

    def pod_requests(self) -> int:
        return sum(p.stats()["requests_total"] for p in self.pods)

    def shed_count(self, pool: str, reason: str) -> float:
        return self.gw.metrics().get("infergate_shed_requests_total", pool=pool_key(pool),
                                     reason=reason)

    def assertShed(self, res):
        self.assertOpenAIError(res, 429, code="pool_saturated", type_="rate_limit_error")
        self.assertEqual(res.headers.get("retry-after"), "7", str(res))

    def test_saturated_pool_sheds_sheddable_only(self):
        for p in self.pods:
            p.set_metrics(waiting=10)
        wait_seen(self.gw, "llama", {p.pod_name: {"waiting": 10} for p in self.pods})
        shed0, before = self.shed_count("llama", "saturated"), self.pod_requests()
        self.assertShed(self.post("shed-m"))
        self.assertShed(self.post("std-m", headers={"x-gateway-inference-objective": "batch"}))
        self.assertEqual(self.pod_requests(), before, "a shed request reached a pod")
        self.assertEqual(self.shed_count("llama", "saturated") - shed0, 2)
        for model in ("crit-m", "std-m"):
            res = self.post(model)
            self.assertEqual(res.status, 200, f"{model}: {res}")
            self.assertIn(res.headers.get("x-sim-pod"), ("pod-1", "pod-2"))
        # The pods recover: sheddable requests are served again.
        for p in self.pods:
            p.set_metrics(waiting=None)
        wait_seen(self.gw, "llama", {p.pod_name: {"waiting": 0} for p in self.pods})
        for model, headers in (("shed-m", None),
                               ("std-m", {"x-gateway-inference-objective": "batch"})):
            res = self.post(model, headers)
            self.assertEqual(res.status, 200, f"{model}: {res}")
            self.assertNotIn("retry-after", res.headers)

    def test_kv_cache_saturation_sheds(self):
        for p in self.pods:
            p.set_metrics(kv_usage=0.85)
        wait_seen(self.gw, "llama", {p.pod_name: {"kv_cache_usage": 0.85} for p in self.pods})
        self.assertShed(self.post("shed-m"))
        self.assertEqual(self.post("crit-m").status, 200)

    def test_one_busy_pod_does_not_saturate_the_pool(self):
        # mean(max(4/5, 0), 0) = 0.4 < 1.
        self.pods[0].set_metrics(waiting=4)
        wait_seen(self.gw, "llama", {"pod-1": {"waiting": 4}, "pod-2": {"waiting": 0}})
        for _ in range(3):
            res = self.post("shed-m")
            self.assertEqual(res.status, 200, str(res))

    def test_failing_metrics_count_as_saturated(self):
        wait_until(lambda: (self.gw.pool_endpoints("stale")["pod-stale"]["metrics"] or {})
                   .get("consecutive_failures", 0) >= 1, 5,
                   message="a failed scrape of pod-stale")
        m = self.gw.pool_endpoints("stale")["pod-stale"]["metrics"]
        self.assertFalse(m["ok"], m)
        self.assertIn("500", m["error"], m)
        shed0 = self.shed_count("stale", "saturated")
        self.assertShed(self.post("stale-shed"))
        self.assertEqual(self.shed_count("stale", "saturated") - shed0, 1)
        self.assertEqual(self.broken.stats()["requests_total"], 0)


# ------------------------------------------------------------------------------------------
# 5. Flow control


class _FlowBase(GatewayTestCase):
    """One pod, one worker (queues are per worker), objectives p0, p5 and neg (priorities 0, 5,
    -1)."""

    FLOW: dict = {}

    @classmethod
    def start_class_fixtures(cls):
        cls.pod = cls.class_sim(pod_name="pod-q", served=["m"])
        cls.gw = cls.class_gateway([
            proxy_config([endpoint("pod-q", cls.pod.address)], workers=1,
                         scheduler={"flowControl": {"enabled": True, **cls.FLOW}}),
            inference_pool("llama"),
            inference_model("m", "llama", criticality=None),
            objective("p0", "llama", 0),
            objective("p5", "llama", 5),
            objective("neg", "llama", -1),
        ])

    def setUp(self):
        super().setUp()
        self.addCleanup(self.unsaturate)
        self.pod.set_metrics(waiting=10)
        wait_seen(self.gw, "llama", {"pod-q": {"waiting": 10}})
        self.pod.reset()

    def unsaturate(self):
        self.pod.set_metrics(waiting=None)
        wait_until(lambda: self.in_gateway() == 0, 10, message="the queue drained")

    def in_gateway(self) -> float:
        """Requests the gateway holds (queued or being served)."""
        return self.gw.metrics().get("inference_objective_running_requests", model_name="m")

    def send_async(self, objective_name: str, prompt: str) -> Background:
        return Background(lambda: curl(
            self.gw.url("/v1/completions"), body=completion("m", prompt, max_tokens=1),
            headers={"x-gateway-inference-objective": objective_name}, timeout=30))

    def queue(self, objective_name: str, prompt: str, depth: int) -> Background:
        """Sends a request and waits until the gateway holds `depth` requests. With one worker
        the request is in the queue once counted: counting and queueing happen in one run of
        the worker thread, before it reads the next request."""
        bg = self.send_async(objective_name, prompt)
        wait_until(lambda: self.in_gateway() == depth or bg.done(), 10,
                   message=f"{depth} request(s) held by the gateway")
        if bg.done():
            self.fail(f"answered instead of queued: {bg.result()}")
        return bg

    def shed_count(self, reason: str) -> float:
        return self.gw.metrics().get("infergate_shed_requests_total", pool="default/llama",
                                     reason=reason)


class FlowOrderTest(_FlowBase):
    FLOW = {"maxRequests": 10, "ttl": "20s"}

    def test_higher_priority_reaches_the_pod_first(self):
        low = self.queue("p0", "low priority, queued first", 1)
        high = self.queue("p5", "high priority, queued second", 2)
        self.assertEqual(self.pod.v1_requests(), [], "a request passed a saturated pool")
        # Capacity for one request at a time: waiting 4 of 5 lets the queue release one per
        # scrape (the released request counts as waiting until the next scrape).
        self.pod.set_metrics(waiting=4)
        r_high, r_low = high.result(), low.result()
        self.assertEqual(r_high.status, 200, str(r_high))
        self.assertEqual(r_low.status, 200, str(r_low))
        prompts = [json.loads(r["body"])["prompt"] for r in self.pod.v1_requests()]
        self.assertEqual(prompts, ["high priority, queued second", "low priority, queued first"])
        self.assertLessEqual(high.finished_at, low.finished_at)

    def test_fcfs_within_a_priority(self):
        bgs = [self.queue("p5", f"request {i}", i + 1) for i in range(3)]
        self.assertEqual(self.pod.v1_requests(), [])
        self.pod.set_metrics(waiting=4)
        for bg in bgs:
            self.assertEqual(bg.result().status, 200)
        prompts = [json.loads(r["body"])["prompt"] for r in self.pod.v1_requests()]
        self.assertEqual(prompts, [f"request {i}" for i in range(3)])

    def test_sheddable_is_refused_not_queued(self):
        queued = self.queue("p0", "standard", 1)
        res = curl(self.gw.url("/v1/completions"), body=completion("m", max_tokens=1),
                   headers={"x-gateway-inference-objective": "neg"})
        self.assertOpenAIError(res, 429, code="pool_saturated")
        self.assertIn("retry-after", res.headers, str(res))
        self.assertFalse(queued.done())
        self.pod.set_metrics(waiting=None)
        self.assertEqual(queued.result().status, 200)
        self.assertEqual([json.loads(x["body"])["prompt"] for x in self.pod.v1_requests()],
                         ["standard"])


class FlowLimitsTest(_FlowBase):
    FLOW = {"maxRequests": 1, "ttl": "1s"}

    def test_ttl_expiry_is_503(self):
        t0 = self.shed_count("queue_timeout")
        start = time.monotonic()
        res = curl(self.gw.url("/v1/completions"), body=completion("m", max_tokens=1),
                   headers={"x-gateway-inference-objective": "p0"})
        elapsed = time.monotonic() - start
        self.assertOpenAIError(res, 503, code="service_unavailable")
        self.assertGreaterEqual(elapsed, 0.95, "answered before the TTL")
        self.assertLess(elapsed, 5, "the TTL was not enforced")
        self.assertEqual(self.shed_count("queue_timeout") - t0, 1)
        self.assertEqual(self.pod.v1_requests(), [])

    def test_full_queue_is_429_queue_full(self):
        f0 = self.shed_count("queue_full")
        first = self.queue("p0", "first", 1)
        start = time.monotonic()
        res = curl(self.gw.url("/v1/completions"), body=completion("m", max_tokens=1),
                   headers={"x-gateway-inference-objective": "p0"})
        self.assertOpenAIError(res, 429, code="queue_full", type_="rate_limit_error")
        self.assertIn("retry-after", res.headers, str(res))
        self.assertLess(time.monotonic() - start, 0.9, "the full queue answered only at the TTL")
        self.assertEqual(self.shed_count("queue_full") - f0, 1)
        self.assertFalse(first.done(), "the queued request was answered by the refusal")
        self.assertEqual(first.result().status, 503)  # its TTL

    def test_higher_priority_displaces_lower(self):
        low = self.queue("p0", "low", 1)
        high = self.send_async("p5", "high")
        res = low.result(5)
        self.assertOpenAIError(res, 429, code="queue_full")
        self.assertLess(low.finished_at - low.started_at, 0.95,
                        "the displaced request waited for its TTL")
        self.assertFalse(high.done(), "the high-priority request was not queued")
        self.pod.set_metrics(waiting=None)
        r = high.result()
        self.assertEqual(r.status, 200, str(r))
        self.assertEqual([json.loads(x["body"])["prompt"] for x in self.pod.v1_requests()],
                         ["high"])


if __name__ == "__main__":
    harness.main()
