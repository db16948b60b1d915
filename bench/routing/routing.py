#!/usr/bin/env python3
"""Routing quality of infergate's scheduler profiles on a simulated fleet (issue 6, part 2).

A fleet of 8 infergate-sim pods (vLLM V1 engine model, Llama-3.1-8B-Instruct BF16 on one H100
SXM, calibrated defaults; LoRA slots 2-4 per pod), infergate in front with the profile under
test, and an open-loop load generator (Poisson arrivals, asyncio, raw HTTP/1.1 streaming chat
completions) replaying seeded workloads:

  chat   (a) shared system prompts + multi-turn conversations (prefix-heavy), base model
  lora   (b) 8 LoRA adapters, Zipf popularity, unique prompts
  mixed  (c) 60 % chat + 40 % lora, with bursts (3x rate for 0.8 s of every 4 s)
  long   (d) long unique prompts, variable output lengths

For each workload, load levels (fraction of the fleet capacity derived from the calibration,
see capacity()) x profiles are run on the same fleet; the gateway is restarted per point and the
sims are reset (POST /sim/reset, POST /reset_prefix_cache). Everything reported is simulated time
(wall time / --time-scale).

  python3 bench/routing/routing.py run --workload mixed          # one figure (results/*.json)
  python3 bench/routing/routing.py report                        # tables + gnuplot PNGs
  python3 bench/routing/routing.py --quick                       # smoke: seconds, no gnuplot

Standard library only. Plots need gnuplot (`report --install-gnuplot` apt-gets gnuplot-nox when
it is missing).
"""
import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results")
BASE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
POLICIES = ["round-robin", "least-request", "gie-legacy", "gie-default", "default"]
LOADS = [0.5, 0.7, 0.85, 1.0, 1.1]
WORKLOADS = ["chat", "lora", "mixed", "long"]
N_PODS = 8
LORA_SLOTS = [2, 3, 4, 2, 3, 4, 3, 2]       # --max-loras per pod ("2-4 slots")
ADAPTERS = [f"adapter-{i}" for i in range(8)]
SEED = 20251127                              # every workload derives its seed from this

# Calibrated step costs (docs/simulator.md, "Calibration"): ms per prompt token computed, ms
# per decoding sequence per step. Used for the capacity estimate only.
PREFILL_MS = 0.03
DECODE_MS = 0.05


# ----------------------------------------------------------------------------- workloads

def text(rng, ntok, tag=""):
    """~ntok tokens of unique text for the sim's tokenizer (1 token per started 4 bytes)."""
    nbytes = max(4, ntok * 4 - len(tag))
    return tag + rng.randbytes(nbytes // 2 + 1).hex()[:nbytes]


def zipf_weights(n, s):
    w = [1.0 / (k + 1) ** s for k in range(n)]
    t = sum(w)
    return [x / t for x in w]


def chat_tokens(messages):
    return sum((len(m["content"]) + 3) // 4 + 4 for m in messages) + 3


class ChatSource:
    """Prefix-heavy chat: 16 system prompts (Zipf 1.0), 128 live conversations of 1-8 turns
    (user turns 300-1200 tokens, replies 300 tokens)."""

    def __init__(self, rng):
        self.rng = rng
        self.systems = [text(rng, 1500, f"[system prompt {i}] ") for i in range(16)]
        self.sys_w = zipf_weights(16, 1.0)
        self.live = []
        self.next_id = 0
        for _ in range(128):
            self.live.append(self.new_conv())

    def new_conv(self):
        rng = self.rng
        cid = self.next_id
        self.next_id += 1
        s = rng.choices(range(16), self.sys_w)[0]
        return {"id": cid, "sys": s, "turns": rng.randint(1, 8),
                "messages": [{"role": "system", "content": self.systems[s]}]}

    def next(self):
        rng = self.rng
        i = rng.randrange(len(self.live))
        c = self.live[i]
        c["messages"].append({"role": "user",
                              "content": text(rng, rng.randint(300, 1200), f"[conv {c['id']}] ")})
        msgs = list(c["messages"])
        out = max(8, min(256, int(rng.lognormvariate(math.log(64), 0.6))))
        # The reply the client will append for the next turn (the sim's own text is synthetic).
        c["messages"].append({"role": "assistant", "content": text(rng, 300, "[reply] ")})
        c["turns"] -= 1
        if c["turns"] <= 0:
            self.live[i] = self.new_conv()
        shared = (len(self.systems[c["sys"]]) + 3) // 4 + 4   # cached on every pod eventually
        return {"model": BASE_MODEL, "messages": msgs, "max_tokens": out,
                "prompt_tokens": chat_tokens(msgs), "shared_tokens": shared, "kind": "chat"}


class LoraSource:
    """8 adapters with Zipf(1.2) popularity, a 200-token task template per adapter, unique text (2.5k-7.5k tokens)."""

    def __init__(self, rng):
        self.rng = rng
        self.w = zipf_weights(len(ADAPTERS), 1.2)
        self.templates = [text(rng, 200, f"[task of {a}] ") for a in ADAPTERS]

    def next(self):
        rng = self.rng
        a = rng.choices(range(len(ADAPTERS)), self.w)[0]
        msgs = [{"role": "system", "content": self.templates[a]},
                {"role": "user", "content": text(rng, rng.randint(2500, 7500), "[q] ")}]
        out = max(8, min(256, int(rng.lognormvariate(math.log(48), 0.6))))
        return {"model": ADAPTERS[a], "messages": msgs, "max_tokens": out,
                "prompt_tokens": chat_tokens(msgs), "shared_tokens": 204, "kind": "lora"}


class LongSource:
    """Long unique prompts (6k-14k tokens), output lognormal (median 150, 16-1024)."""

    def __init__(self, rng):
        self.rng = rng

    def next(self):
        rng = self.rng
        msgs = [{"role": "user", "content": text(rng, rng.randint(6000, 14000), "[doc] ")}]
        out = max(16, min(1024, int(rng.lognormvariate(math.log(150), 0.8))))
        return {"model": BASE_MODEL, "messages": msgs, "max_tokens": out,
                "prompt_tokens": chat_tokens(msgs), "shared_tokens": 0, "kind": "long"}


def rate_multiplier(workload, t):
    """Bursts for the mixed workload: 3x for 0.8 s of every 4 s, 0.5x otherwise (mean 1)."""
    if workload != "mixed":
        return 1.0
    return 3.0 if (t % 4.0) < 0.8 else 0.5


def make_trace(workload, rate, duration, seed):
    """Arrival times (simulated s) and requests. Same seed => same requests at every load level
    and for every policy; only the arrival times scale with the rate."""
    rng = random.Random(f"{seed}-{workload}")
    arr_rng = random.Random(f"{seed}-{workload}-arrivals")
    srcs = {"chat": [ChatSource(rng)], "lora": [LoraSource(rng)], "long": [LongSource(rng)],
            "mixed": [ChatSource(rng), LoraSource(rng)]}[workload]
    trace = []
    t = 0.0
    while True:
        # Thinning of a Poisson process whose rate varies in time (max multiplier 3).
        peak = rate * (3.0 if workload == "mixed" else 1.0)
        t += arr_rng.expovariate(peak)
        if t >= duration:
            break
        if arr_rng.random() > rate * rate_multiplier(workload, t) / peak:
            continue
        src = srcs[0] if len(srcs) == 1 else (srcs[0] if arr_rng.random() < 0.6 else srcs[1])
        trace.append((t, src.next()))
    return trace


def capacity(workload, seed):
    """Fleet capacity in requests/s (simulated), derived from the calibrated step costs.

    At saturation a step of length L computes the prompt tokens and one token of every decoding
    sequence that arrive in L: L = base + PREFILL_MS*lambda*P*L + DECODE_MS*lambda*O*L, which
    diverges at lambda = 1 / (PREFILL_MS*P + DECODE_MS*O) per pod. P is the prompt tokens a
    cache-oblivious router has to compute: the whole prompt minus what every pod ends up caching
    anyway (the shared system prompts / adapter templates); conversation history counts as
    computed. LoRA load stalls are not counted. So 100 % is where a router that gains nothing
    from the prefix cache saturates the fleet; a router that keeps conversations on their pod
    has headroom left (that is what is measured).
    """
    trace = make_trace(workload, 50.0, 200.0, seed)
    reqs = [r for _, r in trace]
    p = sum(r["prompt_tokens"] - r["shared_tokens"] for r in reqs) / len(reqs)
    o = sum(r["max_tokens"] for r in reqs) / len(reqs)
    per_pod = 1000.0 / (PREFILL_MS * p + DECODE_MS * o)
    return N_PODS * per_pod, p, o


# ----------------------------------------------------------------------------- processes

def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http(method, port, path, body=None, timeout=5.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def wait_http(port, path, deadline_s=10.0):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            http("GET", port, path, timeout=1.0)
            return True
        except Exception:
            time.sleep(0.05)
    return False


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, log):
        p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


def gateway_conf(port, admin, sim_ports, policy, ts, workers, variants=None):
    # A variant (--variant NAME=PROFILE:JSON) is a profile plus spec.scheduler tunables.
    profile, extra = (variants or {}).get(policy, (policy, {}))
    extra = dict(extra)
    sat = dict(extra.pop("saturation", {}))
    eps = "\n".join(f"  - {{name: pod-{i}, address: \"127.0.0.1:{p}\", labels: {{app: llama}}}}"
                    for i, p in enumerate(sim_ports))
    # Scrape every 50 ms and treat 200 ms as stale, in simulated time (the defaults).
    interval = max(1, round(50 * ts))
    stale = max(interval * 2, round(200 * ts))
    sat.setdefault("metricsStalenessThreshold", f"{stale}ms")
    tunables = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in extra.items())
    return f"""apiVersion: infergate.io/v1alpha1
kind: ProxyConfig
metadata:
  name: routing-bench
spec:
  workers: {workers}
  listeners:
  - address: 127.0.0.1:{port}
  admin:
    address: 127.0.0.1:{admin}
  modelServerMetrics:
    interval: {interval}ms
    staleAfter: {stale}ms
  scheduler:
    profile: {profile}
    saturation: {json.dumps(sat)}{tunables}
  endpoints:
{eps}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llama
spec:
  selector:
    matchLabels: {{app: llama}}
  targetPorts:
  - number: 8000
  endpointPickerRef:
    name: infergate
    port: {{number: 9002}}
    failureMode: FailClose
"""


class Fleet:
    def __init__(self, args, work, procs):
        self.args, self.work, self.procs = args, work, procs
        self.ports = free_ports(N_PODS)
        self.sims = []
        mods = [f"{a}=/adapters/{a}" for a in ADAPTERS]
        for i, p in enumerate(self.ports):
            self.sims.append(procs.start(
                [args.sim, "--port", str(p), "--pod-name", f"pod-{i}", "--seed", str(1000 + i),
                 "--time-scale", str(args.time_scale), "--max-loras", str(LORA_SLOTS[i]),
                 "--lora-modules", *mods, "--log-level", "warning"],
                f"{work}/sim-{i}.log"))
        for p in self.ports:
            if not wait_http(p, "/sim/stats"):
                raise RuntimeError(f"sim on port {p} did not start (see {work})")

    def reset(self):
        for p in self.ports:
            http("POST", p, "/sim/reset", "")
            http("POST", p, "/reset_prefix_cache", "")

    def counters(self):
        out = []
        for p in self.ports:
            eng = json.loads(http("GET", p, "/sim/engine"))
            met = http("GET", p, "/metrics")
            def val(name):
                m = re.search(rf"^{re.escape(name)}{{[^}}]*}} ([0-9.e+]+)$", met, re.M)
                return float(m.group(1)) if m else 0.0
            out.append({"queries": val("vllm:prefix_cache_queries_total"),
                        "hits": val("vllm:prefix_cache_hits_total"),
                        "lora_loads": eng.get("lora_loads", 0),
                        "preemptions": eng.get("preemptions", 0),
                        "busy": eng["running"] + eng["waiting"]})
        return out

    def wait_idle(self, deadline_s=60.0):
        end = time.time() + deadline_s
        while time.time() < end:
            if all(c["busy"] == 0 for c in self.counters()):
                return True
            time.sleep(0.1)
        return False


# ----------------------------------------------------------------------------- load generator

def quantile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def quantile_ci(xs, q, z=1.645):
    """90 % distribution-free confidence interval of a quantile (order statistics)."""
    xs = sorted(xs)
    n = len(xs)
    if n < 20:
        return (float("nan"), float("nan"))
    d = z * math.sqrt(n * q * (1 - q))
    lo = max(0, int(math.floor(n * q - d)))
    hi = min(n - 1, int(math.ceil(n * q + d)))
    return xs[lo], xs[hi]


CONTENT = b'"delta":{"content":'
CACHED = re.compile(rb'"cached_tokens":(\d+)')


async def one_request(port, req, res):
    body = json.dumps({"model": req["model"], "messages": req["messages"],
                       "max_tokens": req["max_tokens"], "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    t0 = time.perf_counter()
    res["t_send"] = t0
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(head + body)
        await w.drain()
        buf = b""
        first = last = None
        n = 0
        tail = b""
        while True:
            chunk = await r.read(65536)
            if not chunk:
                break
            now = time.perf_counter()
            scan = tail + chunk
            k = scan.count(CONTENT)
            if k:
                n += k
                if first is None:
                    first = now
                last = now
            tail = scan[-(len(CONTENT) - 1):]
            buf += chunk
            if len(buf) > 1 << 20:
                buf = buf[-65536:]
        w.close()
        status = int(buf[9:12]) if buf.startswith(b"HTTP/1.1 ") else 0
        res.update(status=status, tokens=n, t_first=first, t_last=last, t_end=time.perf_counter())
        m = CACHED.search(buf[-4096:])
        res["cached"] = int(m.group(1)) if m else 0
        if status == 200 and n != req["max_tokens"]:
            res["status"] = -1            # truncated stream
    except Exception as e:               # noqa: BLE001 - any failure is an error sample
        res.update(status=0, error=str(e), t_end=time.perf_counter())


async def replay(port, trace, ts):
    results = [dict() for _ in trace]
    tasks = []
    start = time.perf_counter() + 0.05
    lags = []
    for (t, req), res in zip(trace, results):
        due = start + t * ts
        d = due - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        lags.append(time.perf_counter() - due)
        tasks.append(asyncio.ensure_future(one_request(port, req, res)))
    await asyncio.gather(*tasks)
    return start, results, lags


def summarize(trace, start, results, lags, ts, before, after):
    ok = [(req, r) for (_, req), r in zip(trace, results) if r.get("status") == 200]
    ttft = [(r["t_first"] - r["t_send"]) / ts * 1000 for _, r in ok]
    e2e = [(r["t_end"] - r["t_send"]) / ts for _, r in ok]
    itl = [(r["t_last"] - r["t_first"]) / ts * 1000 / (r["tokens"] - 1)
           for _, r in ok if r["tokens"] > 1]
    toks = sum(r["tokens"] for _, r in ok)
    t_end = max((r["t_end"] for r in results if "t_end" in r), default=start)
    dur = max(1e-9, (t_end - start) / ts)
    q = sum(a["queries"] - b["queries"] for a, b in zip(after, before))
    h = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
    lo, hi = quantile_ci(ttft, 0.9)
    by_kind = {}   # diagnostics: TTFT and ITL per request kind (mixed: chat vs lora)
    for kind in sorted({req["kind"] for req, _ in ok}):
        kt = [(r["t_first"] - r["t_send"]) / ts * 1000 for req, r in ok if req["kind"] == kind]
        ki = [(r["t_last"] - r["t_first"]) / ts * 1000 / (r["tokens"] - 1)
              for req, r in ok if req["kind"] == kind and r["tokens"] > 1]
        by_kind[kind] = {"n": len(kt), "ttft_p50": quantile(kt, 0.5),
                         "ttft_p90": quantile(kt, 0.9), "itl_p50": quantile(ki, 0.5)}
    errors = {}
    for r in results:
        if r.get("status") != 200:
            errors[str(r.get("status"))] = errors.get(str(r.get("status")), 0) + 1
    return {
        "requests": len(trace), "ok": len(ok), "errors": errors,
        "ttft_p50": quantile(ttft, 0.5), "ttft_p90": quantile(ttft, 0.9),
        "ttft_p99": quantile(ttft, 0.99), "ttft_p90_ci": [lo, hi],
        "itl_p50": quantile(itl, 0.5), "itl_p90": quantile(itl, 0.9),
        "e2e_p50": quantile(e2e, 0.5), "e2e_p90": quantile(e2e, 0.9),
        "e2e_p99": quantile(e2e, 0.99),
        "tok_s": toks / dur, "duration_s": dur,
        "prefix_hit": h / q if q else 0.0,
        "client_cached": sum(r.get("cached", 0) for _, r in ok) /
        max(1, sum(req["prompt_tokens"] for req, _ in ok)),
        "lora_loads": sum(a["lora_loads"] - b["lora_loads"] for a, b in zip(after, before)),
        "preemptions": sum(a["preemptions"] - b["preemptions"] for a, b in zip(after, before)),
        "lag_p99_ms": quantile(lags, 0.99) * 1000,
        "by_kind": by_kind,
    }


# ----------------------------------------------------------------------------- runner

def run_point(args, fleet, procs, work, policy, workload, trace, load):
    fleet.wait_idle()
    fleet.reset()
    gport, admin = free_ports(2)
    conf = f"{work}/gw-{policy}.yaml"
    with open(conf, "w") as f:
        f.write(gateway_conf(gport, admin, fleet.ports, policy, args.time_scale, args.workers,
                             args.variants))
    log = f"{work}/gw-{policy}-{load}.log"
    gw = procs.start([args.infergate, "--config", conf], log)
    try:
        if not wait_http(admin, "/readyz", 10):
            raise RuntimeError(f"infergate ({args.infergate}) did not become ready:\n"
                               + open(log).read()[-2000:])
        time.sleep(max(0.3, 10 * 50 * args.time_scale / 1000))   # a few scrapes
        before = fleet.counters()
        start, results, lags = asyncio.run(replay(gport, trace, args.time_scale))
        after = fleet.counters()
        decisions = {}
        try:   # why each request went where it went (infergate_scheduling_decisions_total)
            for m in re.finditer(r'^infergate_scheduling_decisions_total{[^}]*reason="([^"]+)"'
                                 r'[^}]*} ([0-9.e+]+)$', http("GET", admin, "/metrics"), re.M):
                decisions[m.group(1)] = decisions.get(m.group(1), 0) + int(float(m.group(2)))
        except Exception:   # noqa: BLE001 - diagnostics only
            pass
    finally:
        procs.stop(gw)
    s = summarize(trace, start, results, lags, args.time_scale, before, after)
    s["decisions"] = decisions
    s.update(policy=policy, load=load, workload=workload)
    return s


def fmt_row(s):
    e = sum(s["errors"].values())
    return (f"{s['workload']:6} {s['load']:4.2f} {s['policy']:13} ok {s['ok']:5}/{s['requests']:<5}"
            f" err {e:3}  TTFT p50 {s['ttft_p50']:7.0f} p90 {s['ttft_p90']:7.0f} p99 "
            f"{s['ttft_p99']:7.0f} ms  ITL {s['itl_p50']:5.1f} ms  e2e p50 {s['e2e_p50']:6.2f} s  "
            f"{s['tok_s']:7.0f} tok/s  hit {100 * s['prefix_hit']:4.1f}%  lora {s['lora_loads']:4}"
            f"  lag99 {s['lag_p99_ms']:.0f}ms")


def cmd_run(args):
    for b in (args.infergate, args.sim):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: cmake --preset release && cmake --build --preset release "
                     "--target infergate infergate-sim")
    work = tempfile.mkdtemp(prefix="infergate-routing-")
    procs = Procs()
    all_out = {}
    try:
        fleet = Fleet(args, work, procs)
        for workload in args.workload:
            cap, p, o = capacity(workload, args.seed)
            print(f"# {workload}: capacity {cap:.1f} req/s (simulated) = 8 pods x 1000 / "
                  f"({PREFILL_MS} x {p:.0f} computed prompt tokens + {DECODE_MS} x {o:.0f} "
                  f"output tokens) ms", flush=True)
            points = []
            for load in args.loads:
                trace = make_trace(workload, cap * load, args.duration, args.seed)
                for policy in args.policies:
                    s = run_point(args, fleet, procs, work, policy, workload, trace, load)
                    s["rate"] = cap * load
                    points.append(s)
                    print(fmt_row(s), flush=True)
                    if s.get("decisions"):
                        print(f"       decisions: {s['decisions']}", flush=True)
                    if len(s.get("by_kind", {})) > 1:
                        print("       by kind: " + "; ".join(
                            f"{k} n {v['n']} TTFT p50 {v['ttft_p50']:.0f} p90 {v['ttft_p90']:.0f}"
                            f" ITL {v['itl_p50']:.1f}" for k, v in s["by_kind"].items()),
                            flush=True)
            all_out[workload] = {
                "workload": workload, "capacity_rps": cap, "mean_computed_prompt_tokens": p,
                "mean_output_tokens": o, "seed": args.seed, "duration_s": args.duration,
                "time_scale": args.time_scale, "workers": args.workers,
                "loads": args.loads, "policies": args.policies, "points": points,
                "machine": machine(), "command": " ".join(sys.argv)}
            if args.save:
                os.makedirs(RESULTS, exist_ok=True)
                with open(os.path.join(RESULTS, f"{workload}.json"), "w") as f:
                    json.dump(all_out[workload], f, indent=1)
    finally:
        procs.stop_all()
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
    return all_out


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "ncpu": os.cpu_count(), "load_avg": os.getloadavg()}


# ----------------------------------------------------------------------------- report

def table(res):
    L = ["| load | policy | req/s | TTFT p50 | TTFT p90 (90% CI) | TTFT p99 | ITL p50 | e2e p50 "
         "| e2e p90 | tok/s | prefix hit | LoRA loads | preempt | errors |",
         "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["points"]:
        lo, hi = s["ttft_p90_ci"]
        L.append(f"| {round(100 * s['load'])}% | {s['policy']} | {s['rate']:.1f} | "
                 f"{s['ttft_p50']:.0f} | **{s['ttft_p90']:.0f}** ({lo:.0f}-{hi:.0f}) | "
                 f"{s['ttft_p99']:.0f} | {s['itl_p50']:.1f} | {s['e2e_p50']:.2f} | "
                 f"{s['e2e_p90']:.2f} | {s['tok_s']:.0f} | {100 * s['prefix_hit']:.1f}% | "
                 f"{s['lora_loads']} | {s['preemptions']} | {sum(s['errors'].values())} |")
    return "\n".join(L)


def verdicts(res):
    """The issue's targets, checked point by point."""
    by = {(s["load"], s["policy"]): s for s in res["points"]}
    L = []
    for load in res["loads"]:
        d = by.get((load, "default"))
        if not d:
            continue
        parts = []
        for peer in ("round-robin", "gie-default", "least-request"):
            p = by.get((load, peer))
            if p:
                parts.append(f"p90 TTFT {peer}/default = {p['ttft_p90'] / d['ttft_p90']:.2f}x, "
                             f"tok/s default/{peer} = {d['tok_s'] / p['tok_s']:.3f}")
        L.append(f"- {round(100 * load)}%: " + "; ".join(parts))
    return "\n".join(L)


def plot(res, out_png, gnuplot):
    wl = res["workload"]
    tmp = tempfile.mkdtemp(prefix="routing-plot-")
    try:
        for pol in res["policies"]:
            with open(f"{tmp}/{pol}.dat", "w") as f:
                for s in res["points"]:
                    if s["policy"] == pol:
                        f.write(f"{100 * s['load']} {s['ttft_p50']} {s['ttft_p90']} "
                                f"{s['ttft_p99']} {s['tok_s']} {100 * s['prefix_hit']} "
                                f"{s['e2e_p90']} {s['lora_loads']}\n")
        def plots(col):
            return ", ".join(f"'{tmp}/{p}.dat' using 1:{col} with linespoints lw 2 title '{p}'"
                             for p in res["policies"])
        gp = f"""set terminal pngcairo size 1400,900 font ',10' noenhanced
set output '{out_png}'
set multiplot layout 2,3 title 'infergate routing, workload {wl}: 8 sim pods (Llama-3.1-8B / H100 model), simulated time'
set grid
set key top left
set xlabel 'load (% of capacity)'
set logscale y
set ylabel 'ms'
set title 'TTFT p50'
plot {plots(2)}
set title 'TTFT p90'
plot {plots(3)}
set title 'TTFT p99'
plot {plots(4)}
unset logscale y
set ylabel 's'
set title 'e2e latency p90'
plot {plots(7)}
set ylabel 'output tokens/s'
set title 'throughput'
plot {plots(5)}
set ylabel '%'
set yrange [0:100]
set title 'prefix-cache hit rate (sims /metrics)'
plot {plots(6)}
unset multiplot
"""
        # pngcairo is not in gnuplot-nox: fall back to the libgd png terminal.
        r = subprocess.run([gnuplot], input=gp, text=True, capture_output=True)
        if r.returncode != 0 or "unknown or ambiguous terminal" in r.stderr:
            r = subprocess.run([gnuplot], input=gp.replace("pngcairo size 1400,900 font ',10'",
                                                            "png size 1400,900"),
                               text=True, capture_output=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_report(args):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot and args.install_gnuplot:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-q"], check=False, stdout=sys.stderr)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "gnuplot-nox"], check=True,
                       stdout=sys.stderr)
        gnuplot = shutil.which("gnuplot")
    os.makedirs(args.img_dir, exist_ok=True)
    for wl in WORKLOADS:
        path = os.path.join(RESULTS, f"{wl}.json")
        if not os.path.exists(path):
            continue
        res = json.load(open(path))
        print(f"\n### Workload {wl}: capacity {res['capacity_rps']:.1f} req/s\n")
        print(table(res))
        print()
        print(verdicts(res))
        if gnuplot:
            png = os.path.join(args.img_dir, f"routing-{wl}.png")
            plot(res, png, gnuplot)
            print(f"\n![{wl}]({os.path.relpath(png, os.path.join(ROOT, 'docs'))})")
        else:
            print("\n(gnuplot missing: no plot; `report --install-gnuplot`)")


def cmd_bound(args):
    """An optimistic estimate of the TTFT any router could reach (no run; diagnostics).

    Fluid model: the 8 pods are one FCFS server that computes 8 pods' worth of work (prompt
    tokens at PREFILL_MS, output tokens at DECODE_MS each) and a request's own prefill runs on
    one pod: TTFT = backlog at arrival / 8 + own prefill. No step overhead, no LoRA loads, no
    chunking. Two cache assumptions: "oracle", every prompt prefix already sent (the previous
    turn of a conversation, a system prompt, an adapter's template) is cached wherever the request
    goes; "oblivious", only the shared system prompts and templates are (the capacity model's
    P). Real pods are separate FCFS queues, so a real router does worse than the oracle line."""
    for workload in args.workload:
        cap, _, _ = capacity(workload, args.seed)
        for load in args.loads:
            trace = make_trace(workload, cap * load, args.duration, args.seed)
            seen = set()
            rows = {"oracle": [], "oblivious": []}
            for mode in rows:
                backlog, last, hit, total = 0.0, 0.0, 0, 0
                seen.clear()
                for t, req in trace:
                    msgs = req["messages"]
                    keys = [hash((req["model"], json.dumps(msgs[:j]))) for j in
                            range(1, len(msgs) + 1)]
                    if mode == "oracle":
                        j = max([j for j in range(1, len(msgs)) if keys[j - 1] in seen],
                                default=0)
                        cached = chat_tokens(msgs[:j]) - 3 if j else 0
                    else:
                        cached = req["shared_tokens"]
                    seen.update(keys)
                    computed = max(1, req["prompt_tokens"] - cached)
                    hit += req["prompt_tokens"] - computed
                    total += req["prompt_tokens"]
                    backlog = max(0.0, backlog - N_PODS * (t - last) * 1000)
                    last = t
                    rows[mode].append(backlog / N_PODS + PREFILL_MS * computed)
                    backlog += PREFILL_MS * computed + DECODE_MS * req["max_tokens"]
                ttft = rows[mode]
                print(f"{workload:6} {load:4.2f} {mode:9} cached {100 * hit / total:4.1f}%  "
                      f"TTFT p50 {quantile(ttft, 0.5):6.0f} p90 {quantile(ttft, 0.9):6.0f} "
                      f"p99 {quantile(ttft, 0.99):6.0f} ms (fluid estimate)", flush=True)


def cmd_quick(args):
    """Smoke: one workload, two policies, a short point; checks that requests flow and that the
    figures come back. Does not touch results/ and needs no gnuplot."""
    args.workload = ["mixed"]
    args.policies = ["round-robin", "default"]
    args.loads = [0.5]
    args.duration = 3.0
    args.save = False
    out = cmd_run(args)["mixed"]
    bad = [s for s in out["points"]
           if s["ok"] < 0.95 * s["requests"] or not s["ttft_p50"] > 0 or s["tok_s"] <= 0
           or s["prefix_hit"] <= 0]
    print(table(out))
    if bad:
        print("FAIL: a point lost requests or reported no figures", file=sys.stderr)
        return 1
    print("OK")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--infergate", default=os.environ.get(
        "INFERGATE_BIN", f"{ROOT}/build/release/proxy/infergate"))
    ap.add_argument("--sim", default=os.environ.get(
        "INFERGATE_SIM_BIN", f"{ROOT}/build/release/sim/infergate-sim"))
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="wall seconds per simulated second (sims and scrape interval)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke mode (ctest bench_routing_smoke)")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run")
    r.add_argument("--workload", nargs="+", default=["mixed"], choices=WORKLOADS)
    r.add_argument("--policies", nargs="+", default=POLICIES)
    r.add_argument("--loads", nargs="+", type=float, default=LOADS)
    r.add_argument("--duration", type=float, default=15.0, help="simulated seconds of arrivals")
    r.add_argument("--no-save", dest="save", action="store_false")
    b = sub.add_parser("bound", help="fluid TTFT estimate for a perfect router (no run)")
    b.add_argument("--workload", nargs="+", default=["mixed"], choices=WORKLOADS)
    b.add_argument("--loads", nargs="+", type=float, default=LOADS)
    b.add_argument("--duration", type=float, default=15.0)
    p = sub.add_parser("report")
    p.add_argument("--img-dir", default=os.path.join(ROOT, "docs", "img"))
    p.add_argument("--install-gnuplot", action="store_true")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PROFILE:JSON",
                    help="an extra policy NAME for --policies: PROFILE with spec.scheduler "
                    "tunables given as a JSON object, e.g. "
                    "'lora2=default:{\"weights\": {\"loraAffinity\": 2}}' (tuning experiments)")
    args = ap.parse_args()
    args.variants = {}
    for v in args.variant:
        name, _, rest = v.partition("=")
        profile, _, js = rest.partition(":")
        if not name or not profile:
            ap.error(f"--variant {v!r}: expected NAME=PROFILE:JSON")
        args.variants[name] = (profile, json.loads(js) if js else {})
    if args.quick:
        sys.exit(cmd_quick(args))
    if args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "bound":
        cmd_bound(args)
    elif args.cmd == "report":
        cmd_report(args)
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
