#!/usr/bin/env python3
"""simbench: load generator and behaviour checks for infergate-sim. Python standard library only.

Every subcommand starts its own infergate-sim processes on 127.0.0.1 port 0 (the binary from
--sim, $INFERGATE_SIM_BIN, or build/release/sim/infergate-sim), drives them with streaming
/v1/completions requests over asyncio sockets, and prints Markdown tables. Client-side times are
divided by --time-scale, so they are simulated seconds whatever the speed-up.

  calibrate  the published vLLM runs of bench/sim/reference.py, replayed with their exact prompt
             and output lengths, next to the published figures
  sweep      Poisson load at increasing rates: TTFT and throughput as the pod saturates
  prefix     a long shared prefix, twice on one pod and once on another
  lora       adapters with one GPU slot: load time, slot waits
  capacity   N concurrent streams on one sim process: the sim's own CPU, and whether token
             timing slipped behind the engine's (if the sim were the bottleneck it would)

Example: python3 bench/sim/simbench.py calibrate --sim build/release/sim/infergate-sim
Extra sim flags go after `--`, e.g. `simbench.py sweep -- --step-base-ms 6`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# The simulator process

def default_sim_binary() -> str:
    env = os.environ.get("INFERGATE_SIM_BIN")
    if env:
        return env
    for candidate in ("build/release/sim/infergate-sim", "build/debug/sim/infergate-sim"):
        path = ROOT / candidate
        if path.exists():
            return str(path)
    sys.exit("simbench: no infergate-sim binary; pass --sim or set INFERGATE_SIM_BIN")


class Sim:
    def __init__(self, binary: str, *flags: str, time_scale: float = 1.0, name: str = "sim"):
        argv = [binary, "--port", "0", "--host", "127.0.0.1", "--pod-name", name, "--seed", "1",
                "--log-level", "warn", "--time-scale", str(time_scale), *flags]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"infergate-sim listening on (\S+):(\d+)", line)
        if not m:
            err = self.proc.stderr.read()
            raise RuntimeError(f"sim did not start: {line!r} {err}")
        self.port = int(m.group(2))
        self.time_scale = time_scale
        self.argv = argv

    def cpu_seconds(self) -> float:
        # utime + stime of /proc/<pid>/stat, in clock ticks.
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def get(self, path: str) -> str:
        return asyncio.run(http_get(self.port, path))

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.get("/metrics").splitlines():
            if line.startswith("#") or not line:
                continue
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Sim":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
# The client

@dataclass
class Result:
    start: float = 0.0
    first: float | None = None  # first output token
    last: float | None = None
    tokens: int = 0
    cached_tokens: int = 0
    error: str | None = None
    gaps: list[float] = field(default_factory=list)  # inter-token gaps, when asked for


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode()


async def http_post(port: int, path: str, body: dict) -> tuple[int, str]:
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest.decode(errors="replace")


async def stream_completion(port: int, body: dict, keep_gaps: bool = False) -> Result:
    """POST a streaming completion; record when each token event arrives."""
    body = dict(body, stream=True, stream_options={"include_usage": True})
    payload = json.dumps(body).encode()
    result = Result(start=time.perf_counter())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        result.error = str(e)
        return result
    writer.write(f"POST /v1/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    buf = b""
    done = False
    try:
        await writer.drain()
        while not done:
            chunk = await reader.read(65536)
            if not chunk:
                break
            now = time.perf_counter()
            buf += chunk
            # SSE events "data: ...\n\n", each inside its own HTTP chunk.
            while True:
                start = buf.find(b"data: ")
                if start < 0:
                    buf = buf[-8:]
                    break
                end = buf.find(b"\n\n", start)
                if end < 0:
                    buf = buf[start:]
                    break
                event = buf[start + 6:end]
                buf = buf[end + 2:]
                if event == b"[DONE]":
                    done = True
                elif event.find(b'"choices":[]') >= 0:
                    usage = json.loads(event).get("usage") or {}
                    details = usage.get("prompt_tokens_details") or {}
                    result.cached_tokens = details.get("cached_tokens", 0)
                elif event.find(b'"error"') >= 0 and event.find(b'"choices"') < 0:
                    result.error = event.decode()[:200]
                else:
                    if result.first is None:
                        result.first = now
                    elif keep_gaps:
                        result.gaps.append(now - result.last)
                    result.last = now
                    result.tokens += 1
        if not done and result.error is None:
            head = buf[:200].decode(errors="replace")
            result.error = f"stream ended early: {head!r}"
    except OSError as e:
        result.error = str(e)
    finally:
        writer.close()
    return result


def prompt_text(tokens: int, salt: str) -> str:
    """Exactly `tokens` tokens for the sim's tokenizer (4 bytes each), unique per salt."""
    rng = random.Random(salt)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(letters) for _ in range(4 * max(tokens, 1)))


def completion_body(prompt: str, max_tokens: int, model: str | None = None) -> dict:
    body = {"prompt": prompt, "max_tokens": max(1, max_tokens), "ignore_eos": True}
    if model:
        body["model"] = model
    return body


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------------------------------------------
# Statistics

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Summary:
    n: int
    duration_s: float
    output_tokens: int
    ttft_ms: list[float]
    e2e_ms: list[float]
    tpot_ms: list[float]
    errors: int

    @property
    def out_tok_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else float("nan")


def summarize(results: list[Result], scale: float, t0: float,
              no_token: set[int] | None = None) -> Summary:
    """Times in simulated ms. Requests in `no_token` count as benchmark_serving counted the
    published requests that produced no token: TTFT 0, no output."""
    no_token = no_token or set()
    ttft, e2e, tpot = [], [], []
    out = 0
    errors = 0
    end = t0
    for i, r in enumerate(results):
        if r.error or r.first is None:
            errors += 1
            continue
        end = max(end, r.last)
        if i in no_token:
            ttft.append(0.0)
            continue
        t = (r.first - r.start) / scale * 1000
        e = (r.last - r.start) / scale * 1000
        ttft.append(t)
        e2e.append(e)
        out += r.tokens
        if r.tokens > 1:
            tpot.append((e - t) / (r.tokens - 1))
    return Summary(len(results), (end - t0) / scale, out, ttft, e2e, tpot, errors)


# ------------------------------------------------------------------------------------------------
# Workloads

async def burst(port: int, bodies: list[dict]) -> tuple[list[Result], float]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(stream_completion(port, b) for b in bodies))
    return list(results), t0


async def poisson(port: int, bodies: list[dict], rate: float, scale: float,
                  seed: int = 0) -> tuple[list[Result], float]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    tasks = []
    at = 0.0
    for body in bodies:
        at += rng.expovariate(rate)  # simulated seconds
        delay = t0 + at * scale - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(stream_completion(port, body)))
    return list(await asyncio.gather(*tasks)), t0


# ------------------------------------------------------------------------------------------------
# Subcommands

def cmd_calibrate(args: argparse.Namespace) -> None:
    reference.check()
    scale = args.time_scale
    print(f"# calibrate: sim flags {' '.join(args.sim_flags) or '(defaults)'}, time scale {scale}\n")

    # vLLM CI latency test: 8 requests of 32 tokens, 128 output tokens each, at once.
    ci = reference.VLLM_CI_H100_LATENCY
    with Sim(args.sim, *args.sim_flags, time_scale=scale) as sim:
        bodies = [completion_body(prompt_text(ci["input_len"], f"ci-{i}"), ci["output_len"])
                  for i in range(ci["batch"])]
        results, t0 = asyncio.run(burst(sim.port, bodies))
        s = summarize(results, scale, t0)
    print("| Reference | Published mean e2e (ms) | Sim mean e2e (ms) |")
    print("|---|---:|---:|")
    print(f"| vLLM CI latency_llama8B_tp1, H100: batch 8, 32 in / 128 out "
          f"| {ci['mean_e2e_ms']:.1f} | {statistics.mean(s.e2e_ms):.1f} |\n")

    print("Lambda H100 runs (Llama-3-8B-Instruct BF16, N ShareGPT prompts at once):\n")
    print("| N | | duration (s) | output tok/s | mean TTFT (ms) | median TTFT (ms) "
          "| p99 TTFT (ms) | median TPOT (ms) | mean e2e (ms) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.levels:
        published = reference.LAMBDA_H100[n]
        outs = reference.OUTPUT_LENS[n]
        bodies = [completion_body(prompt_text(reference.INPUT_LENS_320[i], f"sharegpt-{n}-{i}"),
                                  outs[i]) for i in range(n)]
        with Sim(args.sim, *args.sim_flags, time_scale=scale) as sim:
            results, t0 = asyncio.run(burst(sim.port, bodies))
        s = summarize(results, scale, t0, {i for i, o in enumerate(outs) if o == 0})
        p = published
        print(f"| {n} | published | {p['duration_s']:.2f} | {p['out_tok_per_s']:.0f} "
              f"| {p['mean_ttft_ms']:.0f} | {p['median_ttft_ms']:.0f} | {p['p99_ttft_ms']:.0f} "
              f"| {p['median_tpot_ms']:.1f} | {p['mean_e2e_ms']:.0f} |")
        print(f"| | sim | {s.duration_s:.2f} | {s.out_tok_per_s:.0f} "
              f"| {statistics.mean(s.ttft_ms):.0f} | {statistics.median(s.ttft_ms):.0f} "
              f"| {pct(s.ttft_ms, 99):.0f} | {statistics.median(s.tpot_ms):.1f} "
              f"| {statistics.mean(s.e2e_ms):.0f} |")
        if s.errors:
            print(f"|  | ({s.errors} errors) |")
        sys.stdout.flush()


def cmd_sweep(args: argparse.Namespace) -> None:
    scale = args.time_scale
    lengths = (f"{args.fixed[0]} prompt / {args.fixed[1]} output tokens" if args.fixed
               else "ShareGPT lengths (reference.py)")
    print(f"# sweep: Poisson arrivals, {lengths}, {args.requests} requests per rate, "
          f"time scale {scale}\n")
    print("| rate (req/s) | done req/s | output tok/s | TTFT p50 (ms) | TTFT p90 (ms) "
          "| TTFT p99 (ms) | TPOT p50 (ms) | max waiting |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    lens_in = reference.INPUT_LENS_320
    lens_out = reference.OUTPUT_LENS[320]
    for rate in args.rates:
        if args.fixed:
            bodies = [completion_body(prompt_text(args.fixed[0], f"sweep-{rate}-{i}"),
                                      args.fixed[1]) for i in range(args.requests)]
        else:
            bodies = [completion_body(prompt_text(lens_in[i % 320], f"sweep-{rate}-{i}"),
                                      lens_out[i % 320] or 1) for i in range(args.requests)]
        with Sim(args.sim, *args.sim_flags, time_scale=scale) as sim:
            max_waiting = [0.0]
            stop = [False]

            async def watch() -> None:
                while not stop[0]:
                    text = await http_get(sim.port, "/sim/engine")
                    max_waiting[0] = max(max_waiting[0], json.loads(text)["waiting"])
                    await asyncio.sleep(0.2 * scale)

            async def run() -> tuple[list[Result], float]:
                watcher = asyncio.create_task(watch())
                out = await poisson(sim.port, bodies, rate, scale)
                stop[0] = True
                await watcher
                return out

            results, t0 = asyncio.run(run())
        s = summarize(results, scale, t0)
        print(f"| {rate:g} | {len(s.e2e_ms) / s.duration_s:.1f} | {s.out_tok_per_s:.0f} "
              f"| {pct(s.ttft_ms, 50):.0f} | {pct(s.ttft_ms, 90):.0f} | {pct(s.ttft_ms, 99):.0f} "
              f"| {pct(s.tpot_ms, 50):.1f} | {max_waiting[0]:.0f} |")
        sys.stdout.flush()


def cmd_prefix(args: argparse.Namespace) -> None:
    scale = args.time_scale
    prefix = prompt_text(args.prefix_tokens, "shared-prefix")
    print(f"# prefix: a {args.prefix_tokens}-token shared prefix + a different 20-token question "
          f"each time, 16 output tokens, time scale {scale}\n")
    print("| request | pod | TTFT (ms) | cached tokens |")
    print("|---|---|---:|---:|")
    with Sim(args.sim, *args.sim_flags, time_scale=scale, name="pod-a") as a, \
            Sim(args.sim, *args.sim_flags, time_scale=scale, name="pod-b") as b:
        for label, sim in (("first", a), ("second, same pod", a), ("third, other pod", b)):
            body = completion_body(prefix + prompt_text(20, label), 16)
            r = asyncio.run(stream_completion(sim.port, body))
            ttft = (r.first - r.start) / scale * 1000
            print(f"| {label} | {'pod-a' if sim is a else 'pod-b'} | {ttft:.1f} "
                  f"| {r.cached_tokens} |")
        metrics = a.metrics()
    print(f"\npod-a vllm:prefix_cache_queries_total {metrics['vllm:prefix_cache_queries_total']:.0f}"
          f", vllm:prefix_cache_hits_total {metrics['vllm:prefix_cache_hits_total']:.0f}")


def cmd_lora(args: argparse.Namespace) -> None:
    scale = args.time_scale
    flags = ["--lora-modules", "ad-a=/adapters/a", "ad-b=/adapters/b", "--max-loras", "1",
             *args.sim_flags]
    print(f"# lora: --max-loras 1, --lora-load-ms default unless given, 200-token prompts, "
          f"time scale {scale}\n")
    print("| step | model | TTFT (ms) | note |")
    print("|---|---|---:|---|")
    with Sim(args.sim, *flags, time_scale=scale) as sim:
        def one(label: str, model: str, note: str) -> None:
            body = completion_body(prompt_text(200, label), 8, model)
            r = asyncio.run(stream_completion(sim.port, body))
            print(f"| {label} | {model} | {(r.first - r.start) / scale * 1000:.1f} | {note} |")

        one("1", "ad-a", "not resident: pays the load")
        one("2", "ad-a", "resident now")
        one("3", "meta-llama/Llama-3.1-8B-Instruct", "base model")

        async def contended() -> tuple[Result, Result]:
            long_a = asyncio.create_task(stream_completion(
                sim.port, completion_body(prompt_text(200, "4a"), 300, "ad-a")))
            await asyncio.sleep(0.05 * scale)
            b = await stream_completion(sim.port, completion_body(prompt_text(200, "4b"), 8,
                                                                  "ad-b"))
            return await long_a, b

        long_a, b = asyncio.run(contended())
        print(f"| 4 | ad-b | {(b.first - b.start) / scale * 1000:.1f} | arrives while a "
              f"300-token ad-a request holds the only slot: waits for it to finish "
              f"({(long_a.last - long_a.start) / scale * 1000:.0f} ms), then pays the load |")
        engine = json.loads(sim.get("/sim/engine"))
    print(f"\nLoRA loads: {engine['lora_loads']}, resident: {engine['resident_adapters']}")


def cmd_capacity(args: argparse.Namespace) -> None:
    raise_fd_limit()
    scale = args.time_scale
    n = args.streams
    print(f"# capacity: {n} concurrent streams, {args.prompt_tokens}-token prompts, "
          f"{args.output_tokens} output tokens each, time scale {scale}\n")
    with Sim(args.sim, *args.sim_flags, time_scale=scale) as sim:
        bodies = [completion_body(prompt_text(args.prompt_tokens, f"cap-{i}"), args.output_tokens)
                  for i in range(n)]

        async def run() -> tuple[list[Result], float, float, float]:
            cpu0 = sim.cpu_seconds()
            client0 = time.process_time()
            t0 = time.perf_counter()
            results = await asyncio.gather(*(stream_completion(sim.port, b, keep_gaps=True)
                                             for b in bodies))
            wall = time.perf_counter() - t0
            return list(results), sim.cpu_seconds() - cpu0, wall, time.process_time() - client0

        results, sim_cpu, wall, client_cpu = asyncio.run(run())
        metrics = sim.metrics()
    ok = [r for r in results if not r.error and r.tokens == args.output_tokens]
    gaps = [g / scale * 1000 for r in ok for g in r.gaps]
    client_e2e = statistics.mean((r.last - r.start) / scale for r in ok) if ok else float("nan")
    engine_e2e = (metrics["vllm:e2e_request_latency_seconds_sum"] /
                  max(metrics["vllm:e2e_request_latency_seconds_count"], 1))
    engine_itl = (metrics["vllm:inter_token_latency_seconds_sum"] /
                  max(metrics["vllm:inter_token_latency_seconds_count"], 1)) * 1000
    events = sum(r.tokens for r in ok)
    print("| measure | value |")
    print("|---|---:|")
    print(f"| streams completed / started | {len(ok)} / {n} |")
    print(f"| wall time (s) | {wall:.1f} |")
    print(f"| token events delivered | {events} ({events / wall:.0f}/s) |")
    print(f"| sim CPU (s), share of one core | {sim_cpu:.2f}, {100 * sim_cpu / wall:.1f}% |")
    print(f"| client CPU (s) | {client_cpu:.2f} |")
    print(f"| engine mean e2e (s, from /metrics) | {engine_e2e:.3f} |")
    print(f"| client mean e2e (s) | {client_e2e:.3f} |")
    print(f"| engine mean inter-token latency (ms) | {engine_itl:.1f} |")
    print(f"| client inter-token gap p50 / p99 / max (ms) | {pct(gaps, 50):.1f} / "
          f"{pct(gaps, 99):.1f} / {max(gaps) if gaps else float('nan'):.1f} |")
    errors = [r.error for r in results if r.error][:3]
    if errors:
        print(f"\nerrors: {errors}")


def main() -> None:
    argv = sys.argv[1:]
    sim_flags: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, sim_flags = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", default=None, help="infergate-sim binary")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="passed to the sim; client times are divided by it")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calibrate")
    p.add_argument("--levels", type=int, nargs="+", default=[10, 40, 80, 160, 320],
                   choices=sorted(reference.LAMBDA_H100))
    p = sub.add_parser("sweep")
    p.add_argument("--rates", type=float, nargs="+", default=[5, 10, 15, 20, 25, 30])
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--fixed", type=int, nargs=2, metavar=("IN", "OUT"),
                   help="every request IN prompt tokens, OUT output tokens")
    p = sub.add_parser("prefix")
    p.add_argument("--prefix-tokens", type=int, default=8000)
    sub.add_parser("lora")
    p = sub.add_parser("capacity")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--output-tokens", type=int, default=300)
    args = parser.parse_args(argv)
    args.sim = args.sim or default_sim_binary()
    args.sim_flags = sim_flags
    {"calibrate": cmd_calibrate, "sweep": cmd_sweep, "prefix": cmd_prefix, "lora": cmd_lora,
     "capacity": cmd_capacity}[args.command](args)


if __name__ == "__main__":
    main()
