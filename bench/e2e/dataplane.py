#!/usr/bin/env python3
"""Data-plane cost of infergate next to nginx, haproxy and h2o (issue 6, part 1).

One script, standard library only. It
  1. installs what is missing from Debian (nginx, haproxy, h2o, wrk, nghttp2-client; apt-get is
     called only when something is missing; --no-install or --quick never install),
  2. starts a fixed-response backend: one nginx process (1 worker) serving a realistic,
     non-streamed chat completion on 4 ports,
  3. starts infergate (1 worker, one pool of the 4 ports, scheduler profile least-request,
     modelServerMetrics off), nginx (least_conn, upstream keep-alive), haproxy (leastconn,
     http-reuse always) and h2o (one upstream port: h2o 2.2 takes a single URL) as reverse proxies to
     the same 4 ports,
  4. measures, interleaving the proxies run by run:
     - HTTP/1.1 throughput: wrk, 1 KB chat-completion POST, 64 connections, 1 thread;
     - h2c throughput: h2load, same POST, 8 connections x 8 streams;
       (load generator alone on core 0, proxy + backend on core 1: the proxy is the bottleneck)
       req/s, p50/p99 latency, proxy CPU us per request (the proxy process tree's CPU time,
       utime+stime, read exactly from /proc/PID/task/*/schedstat, / requests), proxy-core saturation (/proc/stat idle of core 1),
       each peer's ratio to infergate run by run; a run whose req/s is more than 5% off the
       point's median or whose proxy core is not saturated (> 5% idle) is rejected;
     - syscalls per request: `perf stat -e raw_syscalls:sys_enter -p <proxy pids>` over a
       separate shorter wrk run (strace -c if perf cannot count);
     - one-connection ping-pong, everything on one core: added latency vs direct to the backend;
     - a fixed-rate run (h2load --h1 --rps: 16 connections x 125 req/s = 2,000 req/s);
     - idle keep-alive connections: RSS per open client connection (8,000 of them);
     - streaming: infergate-sim --itl-ms as backend, per-event arrival times direct vs through
       infergate, nginx, and haproxy with and without `option http-no-delay`;
     - many streams (--only streams): 1,000 concurrent SSE streams from the compiled client
       bench/e2e/sse_load (--sse-load), infergate-sim in fixed-step mode; every event's delay
       against the sim's step grid, direct vs through infergate, nginx (proxy_buffering off)
       and haproxy (http-no-delay), with the proxy's CPU and RSS;
     - (opt-in, --only profile) a perf profile of infergate under the HTTP/1.1 load.
  5. prints Markdown tables (and writes them to --out if given).

Usage:
  bench/e2e/dataplane.py                    # full run (~12 minutes)
  bench/e2e/dataplane.py --quick            # smoke: one short run of each point (seconds)
  bench/e2e/dataplane.py --only profile     # where infergate's CPU goes (perf report)
  bench/e2e/dataplane.py --only streams     # 1,000 concurrent SSE streams (~1 minute)
Exit codes: 0 ok, 1 failure, 77 skipped (tools missing in --quick / --no-install mode).
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEB_PACKAGES = {"nginx": "nginx", "haproxy": "haproxy", "h2o": "h2o", "wrk": "wrk",
                "h2load": "nghttp2-client", "curl": "curl", "taskset": "util-linux"}
PROXIES = ["infergate", "nginx", "haproxy", "h2o"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[dataplane] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- install step

def missing_tools():
    return [t for t in DEB_PACKAGES if shutil.which(t) is None
            and not os.path.exists(f"/usr/sbin/{t}")]


def install(tools):
    pkgs = sorted({DEB_PACKAGES[t] for t in tools})
    log(f"installing {' '.join(pkgs)} (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs,
                   check=True, env=env)


def tool(name):
    p = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if p is None:
        raise SystemExit(f"{name} not found")
    return p


# ---------------------------------------------------------------- payloads

def chat_request_body(size=1024):
    body = {"model": MODEL,
            "messages": [{"role": "system", "content": "You are a helpful assistant. Answer "
                          "briefly and cite the relevant section when you can."},
                         {"role": "user", "content": ""}],
            "max_tokens": 128, "temperature": 0.7}
    base = len(json.dumps(body, separators=(",", ":")))
    filler = ("Summarise the following support ticket and suggest a next step. The customer "
              "reports that the nightly export job fails after the upgrade. ")
    text = (filler * (size // len(filler) + 1))[:size - base]
    body["messages"][1]["content"] = text
    out = json.dumps(body, separators=(",", ":"))
    assert len(out) == size, len(out)
    return out


def chat_response_body():
    # A realistic vLLM non-streamed chat completion (~600 bytes). No '$' or '\'' (nginx string).
    return json.dumps({
        "id": "chatcmpl-9f2c4d7e1b8a4c3e9d6f0a1b2c3d4e5f", "object": "chat.completion",
        "created": 1732700000, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content":
                     "The export job fails because the upgrade renamed the staging bucket. "
                     "Update EXPORT_BUCKET in the job configuration to the new name and re-run "
                     "the job; see section 4.2 of the upgrade notes.", "tool_calls": []},
                     "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
        "usage": {"prompt_tokens": 231, "total_tokens": 279, "completion_tokens": 48,
                  "prompt_tokens_details": None},
        "prompt_logprobs": None}, separators=(",", ":"))


# ---------------------------------------------------------------- process helpers

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


def wait_port(port, timeout=10.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


def tree_pids(root):
    """root and all its descendants (nginx master + workers, ...)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, pending = [], [root]
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(children.get(p, []))
    return out


def user_sys_ticks(pids):
    """(utime, stime) of pids in clock ticks: /proc/PID/stat fields 14 and 15."""
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def cpu_ticks(pids):
    """CPU time of pids in clock ticks: utime + stime of /proc/PID/stat (fields 14, 15)."""
    return sum(user_sys_ticks(pids))


def cpu_ns(pids):
    """CPU time of pids in ns, summed over their threads: /proc/PID/task/TID/schedstat's run time
    is the exact sum behind utime + stime (which /proc/PID/stat rounds to 10 ms ticks: too coarse
    for the fixed-rate point). Falls back to the ticks."""
    total = 0
    try:
        for p in pids:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
    except (OSError, ValueError):
        return cpu_ticks(pids) * 1e9 / CLK_TCK
    return total


def core_times(core):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                # total, idle + iowait, user + nice + system (guest is inside user)
                return sum(v[:8]), v[3] + v[4], v[0] + v[1] + v[2]
    raise RuntimeError(f"cpu{core} not in /proc/stat")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, cmd, cpus, log_path, env=None):
        cmd = ["taskset", "-c", cpus] + cmd
        f = open(log_path, "wb")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        p.name = name
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p)


# ---------------------------------------------------------------- configurations

def nginx_backend_conf(d, ports):
    resp = chat_response_body()
    servers = "\n".join(
        f"    server {{ listen 127.0.0.1:{p} reuseport backlog=4096;\n"
        f"      location / {{ default_type application/json; return 200 '{resp}'; }} }}"
        for p in ports)
    return nginx_main(d, "backend") + f"""
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 16k;
{servers}
}}
"""


def nginx_main(d, name):
    user = "user root root;\n" if os.geteuid() == 0 else ""
    os.makedirs(f"{d}/{name}", exist_ok=True)
    return f"""{user}worker_processes 1;
pid {d}/{name}/nginx.pid;
error_log {d}/{name}/error.log warn;
events {{ worker_connections 16384; }}
"""


def nginx_proxy_conf(d, port, h2port, backends):
    ups = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
    loc = """        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"""
    return nginx_main(d, "nginx") + f"""
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 16k;
    client_body_temp_path {d}/nginx/body;
    proxy_temp_path {d}/nginx/proxy;
    upstream backends {{
        least_conn;
{ups}
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{loc}
    }}
    server {{
        listen 127.0.0.1:{h2port} http2 backlog=4096;
{loc}
    }}
}}
"""


def haproxy_conf(frontends):
    """frontends: list of (name, port, backend_ports, extra_lines)."""
    out = ["global", "    nbthread 1", "    maxconn 9000", "defaults", "    mode http", "    maxconn 9000",
           "    timeout connect 5s", "    timeout client 300s", "    timeout server 300s",
           "    timeout http-keep-alive 300s", "    option http-keep-alive", ""]
    for name, port, bports, extra in frontends:
        out += [f"frontend fe_{name}", f"    bind 127.0.0.1:{port}",
                *[f"    {e}" for e in extra], f"    default_backend be_{name}",
                f"backend be_{name}", "    balance leastconn", "    http-reuse always",
                *[f"    server s{i} 127.0.0.1:{p} maxconn 1000" for i, p in enumerate(bports)], ""]
    return "\n".join(out) + "\n"


def h2o_conf(d, port, backends):
    # h2o 2.2 (Debian 12) takes one upstream URL only (several, round robin, came in 2.3): it
    # proxies to the first backend port. The backend is one nginx worker behind all 4 ports, so
    # the backend's cost does not depend on the port.
    user = "user: root\n" if os.geteuid() == 0 else ""
    return f"""{user}num-threads: 1
max-connections: 20000
http2-idle-timeout: 300
http1-request-timeout: 300
listen:
  host: 127.0.0.1
  port: {port}
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{backends[0]}/
        proxy.preserve-host: OFF
        proxy.timeout.keepalive: 300000
"""


def infergate_conf(port, admin_port, backends, max_idle=64):
    eps = "\n".join(f"  - {{name: be-{i}, address: \"127.0.0.1:{p}\", labels: {{app: bench}}}}"
                    for i, p in enumerate(backends))
    return f"""apiVersion: infergate.io/v1alpha1
kind: ProxyConfig
metadata:
  name: bench
spec:
  workers: 1
  listeners:
  - address: 127.0.0.1:{port}
  admin:
    address: 127.0.0.1:{admin_port}
  limits:
    upstreamMaxIdlePerEndpoint: {max_idle}
  modelServerMetrics:
    enabled: false
  scheduler:
    profile: least-request
  endpoints:
{eps}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: bench
spec:
  selector:
    matchLabels: {{app: bench}}
  targetPorts:
  - number: 8000
  endpointPickerRef:
    name: infergate
    port: {{number: 9002}}
    failureMode: FailClose
"""


# ---------------------------------------------------------------- load generators

def parse_dur(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port, lua, conns, dur, cpus, threads=1):
    cmd = ["taskset", "-c", cpus, tool("wrk"), f"-t{threads}", f"-c{conns}", f"-d{dur}s",
           "--latency", "-s", lua, f"http://127.0.0.1:{port}/v1/chat/completions"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 60).stdout
    r = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[f"p{pct}"] = parse_dur(m.group(1), m.group(2)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] += sum(int(x) for x in m.groups())
    if r["requests"] == 0:
        r["errors"] += 1
    return r


def run_h2load(port, body_file, dur, cpus, conns=8, streams=8, h1=False, rps=None, logf=None):
    cmd = ["taskset", "-c", cpus, tool("h2load"), "-t1", f"-c{conns}", f"-m{streams}",
           f"-D{dur}", "-d", body_file,
           "-H", "content-type: application/json"]
    if h1:
        cmd.append("--h1")
    if rps:
        cmd.append(f"--rps={rps}")
    if logf:
        cmd.append(f"--log-file={logf}")
    cmd.append(f"http://127.0.0.1:{port}/v1/chat/completions")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 60).stdout
    r = {"raw": out}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    r["rps"] = float(m.group(2)) if m else 0.0
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
                  r" (\d+) errored", out)
    r["requests"] = int(m.group(4)) if m else 0
    r["errors"] = (int(m.group(5)) + int(m.group(6))) if m else 1
    m = re.search(r"status codes: (\d+) 2xx", out)
    if m and r["requests"] and int(m.group(1)) < r["requests"]:
        r["errors"] += r["requests"] - int(m.group(1))
    if r["requests"] == 0:
        r["errors"] += 1
    r["p50"] = r["p99"] = float("nan")
    if logf and os.path.exists(logf):
        lat = []
        with open(logf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000.0)  # us -> ms
        os.unlink(logf)
        if lat:
            lat.sort()
            r["p50"] = lat[len(lat) // 2]
            r["p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return r


def measured(fn, pids, core_pids, proxy_core):
    """Runs fn() and returns its result with the proxy's CPU time and the proxy core's use:
    "idle" (/proc/stat idle + iowait share: the saturation check), and "others": the share of
    the core's user + system time spent in processes other than ours (proxy + backend), i.e.
    what the shared machine took away (softirq, mostly loopback packet processing, is in
    neither)."""
    t0, i0, u0 = core_times(proxy_core)
    c0, b0, us0 = cpu_ns(pids), cpu_ticks(core_pids), user_sys_ticks(pids)
    r = fn()
    c1, b1, us1 = cpu_ns(pids), cpu_ticks(core_pids), user_sys_ticks(pids)
    t1, i1, u1 = core_times(proxy_core)
    total = max(1, t1 - t0)
    r["cpu_s"] = (c1 - c0) / 1e9
    r["idle"] = (i1 - i0) / total
    r["others"] = max(0.0, ((u1 - u0) - (b1 - b0)) / total)
    r["cpu_us_req"] = r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else float("nan")
    # The user / kernel split of that CPU time (ticks: 10 ms resolution, ample over a run):
    # the kernel share is the TCP/epoll work every proxy pays, the user share is the proxy's own.
    du, ds = us1[0] - us0[0], us1[1] - us0[1]
    r["user_share"] = du / (du + ds) if du + ds else float("nan")
    r["user_us_req"] = r["cpu_us_req"] * r["user_share"]
    r["sys_us_req"] = r["cpu_us_req"] - r["user_us_req"]
    return r


def count_syscalls(pids, fn):
    """Syscalls made by pids while fn() runs: perf stat (tracepoint count), else strace -c."""
    out_file = tempfile.mktemp(prefix="ig-perf-")
    perf = shutil.which("perf")
    if perf and subprocess.run([perf, "stat", "-e", "raw_syscalls:sys_enter", "--", "true"],
                               capture_output=True).returncode == 0:
        p = subprocess.Popen([perf, "stat", "-x,", "-o", out_file, "-e",
                              "raw_syscalls:sys_enter,context-switches",
                              "-p", ",".join(map(str, pids))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        method = "perf"
    else:
        p = subprocess.Popen(["strace", "-c", "-f", "-o", out_file] +
                             sum((["-p", str(x)] for x in pids), []),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        method = "strace"
    time.sleep(0.5)
    r = fn()
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=10)
    n, cs = 0, float("nan")
    with open(out_file) as f:
        text = f.read()
    os.unlink(out_file)
    if method == "perf":
        for line in text.splitlines():
            if "raw_syscalls:sys_enter" in line:
                n = int(line.split(",")[0])
            if "context-switches" in line:
                cs = int(line.split(",")[0])
    else:
        m = re.search(r"^[-\s]+\n\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)", text.split("------")[-1], re.M)
        mm = re.findall(r"^\S+\s+[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+total$", text, re.M)
        n = int(mm[-1]) if mm else (int(m.group(1)) if m else 0)
    r["syscalls"] = n
    r["method"] = method
    r["sys_per_req"] = n / r["requests"] if r["requests"] else float("nan")
    r["cs_per_req"] = cs / r["requests"] if r["requests"] else float("nan")
    return r


# ---------------------------------------------------------------- streaming client

def sse_times(port, body, timeout=30.0):
    """POSTs body, returns arrival times (ms since the request was sent) of each SSE event."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
           f"Connection: close\r\n\r\n{body}").encode()
    t0 = time.perf_counter()
    s.sendall(req)
    buf, times, header_done, seen = b"", [], False, 0
    while True:
        chunk = s.recv(65536)
        now = (time.perf_counter() - t0) * 1000.0
        if not chunk:
            break
        buf += chunk
        if not header_done:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                continue
            header_done = True
            if b" 200 " not in buf[:buf.find(b"\r\n")]:
                raise RuntimeError(f"stream status: {buf[:200]!r}")
            buf = buf[i + 4:]
        n = buf.count(b"data: ")
        times += [now] * (n - seen)
        seen = n
        if b"data: [DONE]" in buf:
            break
    s.close()
    return times



# ---------------------------------------------------------------- many concurrent streams

def nginx_streams_conf(d, port, backend, keepalive):
    """nginx in front of one streaming backend: SSE settings (proxy_buffering off), an upstream
    keep-alive pool large enough for every stream."""
    return nginx_main(d, "nginx-streams") + f"""
http {{
    access_log off;
    keepalive_timeout 300s;
    client_body_temp_path {d}/nginx-streams/body;
    proxy_temp_path {d}/nginx-streams/proxy;
    upstream backends {{
        server 127.0.0.1:{backend};
        keepalive {keepalive};
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def run_sse_load(a, port, cpus, work, watch_pids):
    """Runs sse_load against port (a.streams streams of a.stream_tokens tokens); samples the RSS
    of watch_pids meanwhile. Returns (the client's JSON, peak RSS KiB of watch_pids)."""
    timeout = int(30 + 3 * a.stream_tokens * a.stream_step_ms / 1000)
    cmd = ["taskset", "-c", cpus, a.sse_load, "--port", str(port), "--streams", str(a.streams),
           "--max-tokens", str(a.stream_tokens), "--model", MODEL, "--timeout-s", str(timeout)]
    out_path, err_path = f"{work}/sse_load.json", f"{work}/sse_load.err"
    peak = 0
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        end = time.time() + timeout + 30
        while p.poll() is None:
            if time.time() > end:
                p.kill()
                p.wait()
                raise RuntimeError("sse_load did not exit")
            if watch_pids:
                peak = max(peak, rss_kib(watch_pids))
            time.sleep(0.05)
    with open(out_path) as f:
        text = f.read()
    if p.returncode not in (0, 1) or not text.strip():
        with open(err_path) as f:
            raise RuntimeError(f"sse_load exited {p.returncode}: {f.read()[:300]}")
    return json.loads(text), peak


def grid_delays(d, step_ms, k):
    """Per-event delays of one sse_load run against infergate-sim in fixed-step mode
    (--ttft-ms = --itl-ms = step_ms).

    The sim starts its first step when the first request arrives and then steps on an absolute
    grid (T0 + n * step); every running stream gets one token at the end of every step. Token j
    of a stream admitted in step n0 is thus written at T0 + (n0 + j) * step, whatever the step
    in which the stream was admitted (at 1,000 streams admission spreads over several steps, so
    comparing raw arrival times per event index, as the single-stream point does, would compare
    admission luck). Taking the client's first send as T0, an event's delay is its arrival
    (relative to the first send) minus its slot on that grid, with n0 the stream's earliest slot
    (a stream's least delayed event is much less than a step late). The delay includes the first
    request's one-way path to the sim (the grid's anchor), as arrival-minus-send does."""
    step_us = step_ms * 1000.0
    delays, by_index, first_steps, incomplete = [], [[] for _ in range(k)], [], 0
    for ev, off in zip(d["events_us"], d["send_offset_us"]):
        # role chunk, k tokens, [DONE]
        if off is None or len(ev) != k + 2:
            incomplete += 1
            continue
        r = [ev[j] + off - (j - 1) * step_us for j in range(1, k + 1)]
        n0 = math.floor(min(r) / step_us)
        first_steps.append(n0)
        for j, x in enumerate(r):
            v = (x - n0 * step_us) / 1000.0
            delays.append(v)
            by_index[j].append(v)
    return delays, by_index, first_steps, incomplete


def pct(xs_sorted, q):
    if not xs_sorted:
        return float("nan")
    return xs_sorted[min(len(xs_sorted) - 1, int(len(xs_sorted) * q))]


def streams_phase(a, work, procs, gen_cpu, proxy_cpu, proxy_core, write, nginx):
    """N concurrent SSE streams (sse_load on the generator core) directly to infergate-sim and
    through infergate, nginx (proxy_buffering off) and haproxy (option http-no-delay), sim and
    proxies on the proxy core; rounds interleaved, one unmeasured warm-up round per target
    first (it fills the proxies' upstream keep-alive pools)."""
    n, k, step = a.streams, a.stream_tokens, a.stream_step_ms
    sim_port, ig_port, ig_admin, ng_port, hp_port = free_ports(5)
    blocks = max(27800, n * ((64 + k) // 16 + 2))
    sim = procs.start("sim-streams", [
        a.sim, "--port", str(sim_port), "--ttft-ms", str(step), "--itl-ms", str(step),
        "--max-num-seqs", str(max(1024, n)), "--max-num-batched-tokens", str(max(8192, 64 * n)),
        "--num-gpu-blocks-override", str(blocks), "--keep-alive-timeout-s", "0",
        "--log-level", "warn"], proxy_cpu, f"{work}/sim-streams.log")
    wait_port(sim_port, proc=sim)
    ig = procs.start("infergate-streams", [a.infergate, "--config", write(
        "infergate-streams.yaml", infergate_conf(ig_port, ig_admin, [sim_port], max_idle=n + 64))],
        proxy_cpu, f"{work}/infergate-streams.log")
    ng = procs.start("nginx-streams", [nginx, "-p", f"{work}/", "-c", write(
        "nginx-streams.conf", nginx_streams_conf(work, ng_port, sim_port, n + 64)),
        "-g", "daemon off;"], proxy_cpu, f"{work}/nginx-streams.log")
    hp = procs.start("haproxy-streams", [tool("haproxy"), "-db", "-f", write(
        "haproxy-streams.cfg", haproxy_conf([("nd", hp_port, [sim_port],
                                              ["option http-no-delay"])]))],
        proxy_cpu, f"{work}/haproxy-streams.log")
    for port, p in [(ig_port, ig), (ng_port, ng), (hp_port, hp)]:
        wait_port(port, proc=p)
    targets = [("direct", sim_port, None), ("infergate", ig_port, ig), ("nginx", ng_port, ng),
               ("haproxy + http-no-delay", hp_port, hp)]
    sim_pids = tree_pids(sim.pid)
    for t, port, p in targets:  # warm-up
        run_sse_load(a, port, gen_cpu, work, [])
    per = {t: [] for t, _, _ in targets}
    for i in range(a.runs):
        for t, port, p in targets:
            pids = tree_pids(p.pid) if p else []
            rss0 = rss_kib(pids)
            t0, i0, _ = core_times(proxy_core)
            c0, s0 = cpu_ns(pids), cpu_ns(sim_pids)
            d, peak = run_sse_load(a, port, gen_cpu, work, pids)
            c1, s1 = cpu_ns(pids), cpu_ns(sim_pids)
            t1, i1, _ = core_times(proxy_core)
            delays, by_index, first_steps, incomplete = grid_delays(d, step, k)
            wall_s = d["wall_ms"] / 1000.0
            events = sum(len(e) for e in d["events_us"])
            r = {"d": d, "delays": sorted(delays), "by_index": by_index,
                 "first_steps": first_steps, "failed": max(n - d["completed"], incomplete),
                 "first_error": d["first_error"] or (f"{incomplete} streams with the wrong event "
                                                     "count" if incomplete else ""),
                 "proxy_cpu": (c1 - c0) / 1e9 / wall_s, "sim_cpu": (s1 - s0) / 1e9 / wall_s,
                 "cpu_us_event": (c1 - c0) / 1e3 / events if events and pids else float("nan"),
                 "client_cpu": d["client_cpu_ms"] / d["wall_ms"],
                 "idle": (i1 - i0) / max(1, t1 - t0), "rss0": rss0, "rss_peak": max(peak, rss0)}
            per[t].append(r)
            ds = r["delays"]
            log(f"streams run {i + 1}/{a.runs} {t}: {d['completed']}/{n} completed, delay p50 "
                f"{pct(ds, 0.5):.2f} p99 {pct(ds, 0.99):.2f} max {pct(ds, 1.0):.2f} ms, admitted "
                f"in steps 0..{max(first_steps, default=-1)}, proxy cpu "
                f"{100 * r['proxy_cpu']:.0f}% sim cpu {100 * r['sim_cpu']:.0f}% client cpu "
                f"{100 * r['client_cpu']:.0f}% proxy core idle {100 * r['idle']:.0f}% rss "
                f"{rss0 / 1024:.1f}->{r['rss_peak'] / 1024:.1f} MiB"
                + (f" FAILED {r['failed']}: {r['first_error']}" if r["failed"] else ""))
    out = {"n": n, "k": k, "step_ms": step, "targets": {}}
    for t, _, p in targets:
        rs = per[t]
        ds = sorted(x for r in rs for x in r["delays"])
        idx_med = [median([x for r in rs for x in r["by_index"][j]]) for j in range(k)]
        out["targets"][t] = {
            "p50": pct(ds, 0.5), "p99": pct(ds, 0.99), "p999": pct(ds, 0.999),
            "max": pct(ds, 1.0), "idx_med_max": max(idx_med) if idx_med else float("nan"),
            "run_p99": [pct(r["delays"], 0.99) for r in rs],
            "events": len(ds), "attempted": n * len(rs),
            "failed_streams": sum(r["failed"] for r in rs),
            "first_error": next((r["first_error"] for r in rs if r["first_error"]), ""),
            "admit_steps": max((max(r["first_steps"], default=0) for r in rs), default=0),
            "proxy_cpu": median([r["proxy_cpu"] for r in rs]) if p else float("nan"),
            "cpu_us_event": median([r["cpu_us_event"] for r in rs]),
            "sim_cpu": median([r["sim_cpu"] for r in rs]),
            "client_cpu": max(r["client_cpu"] for r in rs),
            "idle": median([r["idle"] for r in rs]),
            "rss0": min(r["rss0"] for r in rs) if p else 0,
            "rss_peak": max(r["rss_peak"] for r in rs) if p else 0}
    for p in (hp, ng, ig, sim):
        procs.stop(p)
    return out


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_idle(port, n, body):
    """Opens n keep-alive connections, sends one request on each, reads each response whole and
    leaves the connections open (idle). Returns the sockets."""
    import selectors
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    socks, sel, pending = [], selectors.DefaultSelector(), 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
        socks.append(s)
        pending += 1
        # keep at most 256 requests outstanding
        while pending >= 256 or (i == n - 1 and pending):
            for key, _ in sel.select(timeout=10):
                data = key.fileobj.recv(65536)
                key.data[0] += data
                buf = key.data[0]
                h = buf.find(b"\r\n\r\n")
                if h >= 0:
                    m = re.search(rb"content-length: *(\d+)", buf[:h], re.I)
                    if m and len(buf) - h - 4 >= int(m.group(1)):
                        if b" 200 " not in buf[:20]:
                            raise RuntimeError(f"idle: {buf[:100]!r}")
                        sel.unregister(key.fileobj)
                        pending -= 1
                if not data:
                    raise RuntimeError("idle: connection closed")
    sel.close()
    return socks


# ---------------------------------------------------------------- the benchmark

def fmt(v, nd=1):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{nd}f}"


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: one short run of each point")
    ap.add_argument("--no-install", action="store_true", help="never call apt-get")
    ap.add_argument("--infergate", default=f"{ROOT}/build/release/proxy/infergate")
    ap.add_argument("--sim", default=f"{ROOT}/build/release/sim/infergate-sim")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per throughput run")
    ap.add_argument("--out", help="also write the Markdown tables to this file")
    ap.add_argument("--only", default="h1,h2c,syscalls,pingpong,rate,idle,stream,streams",
                    help="comma-separated phases: "
                         "h1,h2c,syscalls,pingpong,rate,idle,stream,streams[,profile]")
    ap.add_argument("--sse-load", help="the sse_load client (streams phase); default: "
                    "<infergate's build dir>/bench/sse_load")
    ap.add_argument("--streams", type=int, default=1000, help="streams phase: concurrent streams")
    ap.add_argument("--stream-tokens", type=int, default=50, help="streams phase: tokens a stream")
    ap.add_argument("--stream-step-ms", type=float, default=50.0,
                    help="streams phase: the sim's step (--ttft-ms = --itl-ms)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.duration = 1, 1
        a.streams, a.stream_tokens, a.stream_step_ms = 50, 5, 20.0
    if a.sse_load is None:
        a.sse_load = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(a.infergate))),
                                  "bench", "sse_load")

    miss = missing_tools()
    if miss:
        if a.quick or a.no_install:
            print(f"SKIP: missing {', '.join(miss)} (Debian: "
                  f"{' '.join(sorted({DEB_PACKAGES[t] for t in miss}))}; "
                  f"scripts/install-deps.sh installs them)")
            return SKIP
        install(miss)
    needed = [a.infergate, a.sim] + ([a.sse_load] if "streams" in a.only.split(",") else [])
    for b in needed:
        if not os.access(b, os.X_OK):
            print(f"{'SKIP' if a.quick else 'ERROR'}: {b} not built "
                  "(cmake --build --preset release --target infergate infergate-sim sse_load)")
            return SKIP if a.quick else 1

    ncpu = os.cpu_count() or 1
    gen_cpu, proxy_cpu = ("0", "1") if ncpu >= 2 else ("0", "0")
    proxy_core = int(proxy_cpu)
    phases = set(a.only.split(","))

    work = tempfile.mkdtemp(prefix="infergate-e2e-")
    procs = Procs()
    results = {}

    def cleanup(*_):
        procs.stop_all()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))

    try:
        return run(a, work, procs, gen_cpu, proxy_cpu, proxy_core, phases, results)
    finally:
        cleanup()


def run(a, work, procs, gen_cpu, proxy_cpu, proxy_core, phases, results):
    req_body = chat_request_body()
    body_file = f"{work}/request.json"
    with open(body_file, "w") as f:
        f.write(req_body)
    lua = f"{work}/post.lua"
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(req_body)}\n")

    (b1, b2, b3, b4, ig_port, ig_admin, ng_port, ng_h2, hp_port, h2o_port,
     sim_port, ig_s, ig_s_admin, hp_s_def, hp_s_nd, ng_s, ng_s_h2) = free_ports(17)
    backends = [b1, b2, b3, b4]

    def write(name, text):
        p = f"{work}/{name}"
        with open(p, "w") as f:
            f.write(text)
        return p

    nginx = tool("nginx")
    # Backend: one nginx worker on the proxy core.
    be = procs.start("backend", [nginx, "-p", f"{work}/", "-c",
                                 write("backend.conf", nginx_backend_conf(work, backends)),
                                 "-g", "daemon off;"], proxy_cpu, f"{work}/backend.log")
    for p in backends:
        wait_port(p, proc=be)

    starters = {
        "infergate": lambda: procs.start(
            "infergate", [a.infergate, "--config",
                          write("infergate.yaml", infergate_conf(ig_port, ig_admin, backends))],
            proxy_cpu, f"{work}/infergate.log"),
        "nginx": lambda: procs.start(
            "nginx", [nginx, "-p", f"{work}/", "-c",
                      write("nginx.conf", nginx_proxy_conf(work, ng_port, ng_h2, backends)),
                      "-g", "daemon off;"], proxy_cpu, f"{work}/nginx.log"),
        "haproxy": lambda: procs.start(
            "haproxy", [tool("haproxy"), "-db", "-f",
                        write("haproxy.cfg", haproxy_conf([("bench", hp_port, backends, [])]))],
            proxy_cpu, f"{work}/haproxy.log"),
        "h2o": lambda: procs.start(
            "h2o", [tool("h2o"), "-c", write("h2o.conf", h2o_conf(work, h2o_port, backends))],
            proxy_cpu, f"{work}/h2o.log"),
    }
    os.makedirs(f"{work}/h2o", exist_ok=True)
    h1_port = {"infergate": ig_port, "nginx": ng_port, "haproxy": hp_port, "h2o": h2o_port}
    h2_port = {"infergate": ig_port, "nginx": ng_h2, "haproxy": hp_port, "h2o": h2o_port}
    running = {}
    for name in PROXIES:
        running[name] = starters[name]()
        wait_port(h1_port[name], proc=running[name])

    # Correctness check through every proxy (and direct): 200 and a "model" field.
    curl = tool("curl")
    for name, port in [("direct", b1)] + [(n, h1_port[n]) for n in PROXIES]:
        out = subprocess.run([curl, "-sS", "-m", "5", "-H", "content-type: application/json",
                              "--data-binary", f"@{body_file}",
                              f"http://127.0.0.1:{port}/v1/chat/completions"],
                             capture_output=True, text=True)
        try:
            if json.loads(out.stdout)["model"] != MODEL:
                raise ValueError("model")
        except (ValueError, KeyError) as e:
            log(f"{name}: bad response ({e}): {out.stdout[:300]!r} {out.stderr[:300]!r}")
            return 1

    # h2c support (prior knowledge) of each proxy.
    h2c_ok = {}
    for name in PROXIES:
        out = subprocess.run([curl, "-sS", "-m", "5", "--http2-prior-knowledge", "-o", "/dev/null",
                              "-w", "%{http_version} %{http_code}", "-H",
                              "content-type: application/json", "--data-binary", f"@{body_file}",
                              f"http://127.0.0.1:{h2_port[name]}/v1/chat/completions"],
                             capture_output=True, text=True)
        h2c_ok[name] = out.stdout.strip() == "2 200"
        if not h2c_ok[name]:
            log(f"{name}: no h2c with prior knowledge ({out.stdout.strip()!r} "
                f"{out.stderr.strip()[:200]!r}); its h2c point is skipped")
    results["h2c_ok"] = h2c_ok

    def proxy_pids(name):
        return tree_pids(running[name].pid)

    failures = []

    # Warm up (connections, caches, allocator).
    for name in PROXIES if not a.quick else []:
        run_wrk(h1_port[name], lua, 64, 2, gen_cpu)

    def throughput(phase, fn_for):
        per = {n: [] for n in PROXIES}
        for i in range(a.runs):
            for name in PROXIES:
                if phase == "h2c" and not h2c_ok[name]:
                    continue
                r = measured(fn_for(name), proxy_pids(name),
                             proxy_pids(name) + tree_pids(be.pid), proxy_core)
                r["run"] = i
                per[name].append(r)
                log(f"{phase} run {i + 1}/{a.runs} {name}: {r['rps']:.0f} req/s "
                    f"p50 {fmt(r['p50'], 2)} ms p99 {fmt(r['p99'], 2)} ms "
                    f"cpu {fmt(r['cpu_us_req'])} us/req idle {r['idle'] * 100:.1f}% "
                    f"others {r['others'] * 100:.0f}%"
                    + (f" ERRORS {r['errors']}" if r["errors"] else ""))
                if r["errors"]:
                    failures.append(f"{phase} {name} run {i + 1}: {r['errors']} errors")
        # Rejection: proxy core not saturated, or req/s more than 5% off the point's median.
        for name, rs in per.items():
            med = median([r["rps"] for r in rs])
            for r in rs:
                why = []
                if r["idle"] > 0.05:
                    why.append(f"proxy core {r['idle'] * 100:.0f}% idle")
                if med and abs(r["rps"] - med) / med > 0.05:
                    why.append(f"req/s {100 * (r['rps'] - med) / med:+.1f}% off median")
                r["rejected"] = "; ".join(why)
        return per

    if "h1" in phases:
        results["h1"] = throughput("h1", lambda n: lambda: run_wrk(
            h1_port[n], lua, 64, a.duration, gen_cpu))
    if "h2c" in phases:
        results["h2c"] = throughput("h2c", lambda n: lambda: run_h2load(
            h2_port[n], body_file, a.duration, gen_cpu, logf=f"{work}/h2load-{n}.log"))

    if "profile" in phases:
        # Where infergate's CPU goes under the HTTP/1.1 load (perf, flat self-time profile).
        perf = tool("perf")
        data = f"{work}/perf.data"
        rec = subprocess.Popen([perf, "record", "-F", "2999", "-o", data, "-p",
                                ",".join(map(str, proxy_pids("infergate")))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        run_wrk(h1_port["infergate"], lua, 64, a.duration, gen_cpu)
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        for sort in ("dso", "symbol"):
            out = subprocess.run([perf, "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                                  "--sort", sort, "--percent-limit", "0.7"],
                                 capture_output=True, text=True).stdout
            results.setdefault("profile", []).append(
                "\n".join(" ".join(line.split()[:3]) if sort == "symbol" else line.rstrip()
                          for line in out.splitlines() if line.strip() and not line.startswith("#")))
        # Which syscalls (strace -c: slows the proxy several-fold, so only the mix is meaningful).
        st_out = f"{work}/strace.txt"
        st = subprocess.Popen(["strace", "-c", "-f", "-o", st_out] + sum(
            (["-p", str(x)] for x in proxy_pids("infergate")), []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = run_wrk(h1_port["infergate"], lua, 64, 3, gen_cpu)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        lines = [f"strace -c -f, {r['requests']} requests (calls/request in the last column):"]
        with open(st_out) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+\s+)?(\w+)\s*$", line)
                if m and r["requests"]:
                    lines.append(f"{line.rstrip()}   {int(m.group(1)) / r['requests']:.2f}")
                else:
                    lines.append(line.rstrip())
        results["profile"].append("\n".join(lines))
        print("\n\n".join(results["profile"]))

    if "syscalls" in phases:
        sc = {}
        for name in PROXIES:
            r = count_syscalls(proxy_pids(name), lambda: run_wrk(
                h1_port[name], lua, 64, max(1, a.duration // 3), gen_cpu))
            sc[name] = r
            log(f"syscalls {name}: {r['sys_per_req']:.2f} per request, "
                f"{fmt(r['cs_per_req'], 2)} context switches ({r['method']})")
        results["syscalls"] = sc

    if "pingpong" in phases:
        # Everything on the proxy core: backend, proxy and a 1-connection wrk.
        pp = {n: [] for n in ["direct"] + PROXIES}
        for i in range(a.runs):
            for name, port in [("direct", b1)] + [(n, h1_port[n]) for n in PROXIES]:
                r = run_wrk(port, lua, 1, max(1, a.duration // 2), proxy_cpu)
                pp[name].append(r)
                if r["errors"]:
                    failures.append(f"pingpong {name}: {r['errors']} errors")
        results["pingpong"] = pp
        for n, rs in pp.items():
            log(f"pingpong {n}: p50 {fmt(median([r['p50'] for r in rs]) * 1000, 1)} us")

    if "rate" in phases:
        rate = {}
        for name in PROXIES:
            r = measured(lambda: run_h2load(h1_port[name], body_file, a.duration, gen_cpu,
                                            conns=16, streams=1, h1=True, rps=125,
                                            logf=f"{work}/rate-{name}.log"),
                         proxy_pids(name), proxy_pids(name) + tree_pids(be.pid), proxy_core)
            rate[name] = r
            log(f"rate {name}: {r['rps']:.0f} req/s p50 {fmt(r['p50'], 3)} ms "
                f"p99 {fmt(r['p99'], 3)} ms cpu {fmt(r['cpu_us_req'])} us/req")
            if r["errors"]:
                failures.append(f"rate {name}: {r['errors']} errors")
        results["rate"] = rate

    if "idle" in phases:
        # RSS per idle keep-alive client connection (after one request each).
        n_idle = 200 if a.quick else 8000  # haproxy's maxconn is bounded by the FD limit
        idle = {}
        for name in PROXIES:
            pids = proxy_pids(name)
            before = rss_kib(pids)
            socks = open_idle(h1_port[name], n_idle, req_body)
            time.sleep(0.5)
            after = rss_kib(pids)
            for s_ in socks:
                s_.close()
            idle[name] = {"n": n_idle, "before": before, "after": after,
                          "per_conn": (after - before) * 1024.0 / n_idle}
            log(f"idle {name}: RSS {before} -> {after} KiB, "
                f"{idle[name]['per_conn']:.0f} B per connection")
            time.sleep(0.5)
        results["idle"] = idle

    if "stream" in phases:
        # Throughput proxies stop; a sim streams, each proxy in front of it.
        for name in PROXIES:
            procs.stop(running[name])
        itl = 10
        sim = procs.start("sim", [a.sim, "--port", str(sim_port), "--ttft-ms", "20",
                                  "--itl-ms", str(itl)], proxy_cpu, f"{work}/sim.log")
        wait_port(sim_port, proc=sim)
        ig = procs.start("infergate-stream", [a.infergate, "--config", write(
            "infergate-stream.yaml", infergate_conf(ig_s, ig_s_admin, [sim_port]))],
            proxy_cpu, f"{work}/infergate-stream.log")
        hp = procs.start("haproxy-stream", [tool("haproxy"), "-db", "-f", write(
            "haproxy-stream.cfg", haproxy_conf([("def", hp_s_def, [sim_port], []),
                                                ("nd", hp_s_nd, [sim_port],
                                                 ["option http-no-delay"])]))],
            proxy_cpu, f"{work}/haproxy-stream.log")
        ngs = procs.start("nginx-stream", [nginx, "-p", f"{work}/", "-c", write(
            "nginx-stream.conf", nginx_proxy_conf(work, ng_s, ng_s_h2, [sim_port])),
            "-g", "daemon off;"], proxy_cpu, f"{work}/nginx-stream.log")
        for port, p in [(ig_s, ig), (hp_s_def, hp), (hp_s_nd, hp), (ng_s, ngs)]:
            wait_port(port, proc=p)
        n_tok = 20 if a.quick else 50
        body = json.dumps({"model": MODEL, "stream": True, "max_tokens": n_tok, "ignore_eos": True,
                           "messages": [{"role": "user", "content": "Tell me a story."}]})
        targets = [("direct", sim_port), ("infergate", ig_s), ("nginx", ng_s),
                   ("haproxy (default)", hp_s_def), ("haproxy + http-no-delay", hp_s_nd)]
        reps = 2 if a.quick else 20
        times = {t: [] for t, _ in targets}
        for _ in range(reps):
            for t, port in targets:
                times[t].append(sse_times(port, body))
        # Per event index k (the role chunk excluded): the median arrival over the repetitions,
        # minus direct's median arrival of the same event. The medians take out most of the
        # sim's and the shared machine's jitter; "raw" compares single arrivals with direct's
        # median and so includes that jitter (direct's own raw row is the noise floor).
        ks = min(len(x) for rs in times.values() for x in rs)
        if ks < n_tok:
            failures.append(f"stream: only {ks} events")
        ref = [median([x[k] for x in times["direct"]]) for k in range(ks)]
        st = {}
        for t, _ in targets:
            per_k = sorted(median([x[k] for x in times[t]]) - ref[k] for k in range(1, ks))
            raw = sorted(x[k] - ref[k] for x in times[t] for k in range(1, ks))
            gaps = sorted(x[k] - x[k - 1] for x in times[t] for k in range(2, ks))
            st[t] = {"p50": per_k[len(per_k) // 2], "max": per_k[-1],
                     "raw_p99": raw[min(len(raw) - 1, int(len(raw) * 0.99))],
                     "gap_p50": gaps[len(gaps) // 2], "gap_max": gaps[-1], "events": ks}
            log(f"stream {t}: per-event median delay vs direct: p50 {st[t]['p50']:.2f} ms, "
                f"max {st[t]['max']:.2f}; raw p99 {st[t]['raw_p99']:.2f}; gap p50 "
                f"{st[t]['gap_p50']:.2f} max {st[t]['gap_max']:.2f}")
        results["stream"] = st
        results["stream_itl"] = itl

    if "streams" in phases:
        # Many concurrent SSE streams: everything else stops, a sim in fixed-step mode streams to
        # the compiled client (sse_load) directly and through each proxy.
        procs.stop_all()
        r = streams_phase(a, work, procs, gen_cpu, proxy_cpu, proxy_core, write, nginx)
        results["streams"] = r
        for t, st in r["targets"].items():
            if st["failed_streams"]:
                failures.append(f"streams {t}: {st['failed_streams']} of {st['attempted']} streams "
                                f"failed ({st['first_error']})")

    text = report(a, results, gen_cpu, proxy_cpu)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if failures:
        log("FAILURES: " + "; ".join(failures))
        return 1
    return 0


def report(a, results, gen_cpu, proxy_cpu):
    L = []
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    L.append(f"<!-- dataplane.py runs={a.runs} duration={a.duration}s load(1/5/15)={load} "
             f"generator cpu {gen_cpu}, proxy+backend cpu {proxy_cpu} -->")
    for phase, title in (("h1", "HTTP/1.1, wrk -t1 -c64, 1 KB POST"),
                         ("h2c", "h2c, h2load -t1 -c8 -m8, 1 KB POST")):
        if phase not in results:
            continue
        per = results[phase]
        L.append(f"\n### {title}\n")
        L.append("| proxy | req/s | p50 ms | p99 ms | CPU µs/req | of which user | of which kernel "
                 "| CPU/req vs infergate | req/s vs infergate | runs kept |")
        # (* = ratio over all run pairs, no pair had both runs kept)
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ig_all = {r["run"]: r for r in per["infergate"]}
        for name in PROXIES:
            rs = per[name]
            if not rs:
                L.append(f"| {name} | skipped: no h2c | | | | | | |")
                continue
            kept = [r for r in rs if not r["rejected"]]
            note = ""
            if not kept:
                kept, note = rs, " (all rejected: medians of all runs)"
            # Ratios run by run: run i of the peer over run i of infergate (adjacent in time),
            # over the pairs where both runs were kept, else over all pairs (marked *).
            pairs = [(r, ig_all[r["run"]]) for r in rs if r["run"] in ig_all
                     and not r["rejected"] and not ig_all[r["run"]]["rejected"]]
            star = ""
            if not pairs:
                pairs = [(r, ig_all[r["run"]]) for r in rs if r["run"] in ig_all]
                star = "*"
            ratios_cpu = [r["cpu_us_req"] / i["cpu_us_req"] for r, i in pairs]
            ratios_rps = [r["rps"] / i["rps"] for r, i in pairs]
            L.append(f"| {name} | {median([r['rps'] for r in kept]):.0f} | "
                     f"{fmt(median([r['p50'] for r in kept]), 2)} | "
                     f"{fmt(median([r['p99'] for r in kept]), 2)} | "
                     f"{fmt(median([r['cpu_us_req'] for r in kept]))} | "
                     f"{fmt(median([r.get('user_us_req', float('nan')) for r in kept]))} | "
                     f"{fmt(median([r.get('sys_us_req', float('nan')) for r in kept]))} | "
                     f"{(fmt(median(ratios_cpu), 2) + star) if name != 'infergate' else '1'} | "
                     f"{(fmt(median(ratios_rps), 2) + star) if name != 'infergate' else '1'} | "
                     f"{len([r for r in rs if not r['rejected']])}/{len(rs)}{note} |")
        rej = [(n, r) for n in PROXIES for r in per[n] if r["rejected"]]
        if rej:
            L.append("\nRejected runs: " + "; ".join(
                f"{n} run {r['run'] + 1} ({r['rps']:.0f} req/s, {r['rejected']})" for n, r in rej))
        L.append("\nPer run (req/s / CPU µs/req / proxy core idle / proxy core taken by other "
                 "processes of the machine): " + "; ".join(
            f"{n}: " + ", ".join(f"{r['rps']:.0f}/{r['cpu_us_req']:.1f}/{r['idle'] * 100:.0f}%/"
                                 f"{r['others'] * 100:.0f}%"
                                 for r in per[n]) for n in PROXIES if per[n]))
    if "syscalls" in results:
        sc = results["syscalls"]
        L.append("\n### Syscalls per request (HTTP/1.1, separate shorter wrk run)\n")
        L.append("| proxy | syscalls/req | context switches/req | method |")
        L.append("|---|---:|---:|---|")
        for n in PROXIES:
            L.append(f"| {n} | {sc[n]['sys_per_req']:.2f} | {fmt(sc[n]['cs_per_req'], 2)} | "
                     f"{sc[n]['method']} |")
    if "pingpong" in results:
        pp = results["pingpong"]
        d50 = median([r["p50"] for r in pp["direct"]]) * 1000
        L.append("\n### One-connection ping-pong, everything on one core (wrk -c1)\n")
        L.append("| target | p50 µs | p99 µs | added p50 µs |")
        L.append("|---|---:|---:|---:|")
        for n in ["direct"] + PROXIES:
            p50 = median([r["p50"] for r in pp[n]]) * 1000
            p99 = median([r["p99"] for r in pp[n]]) * 1000
            L.append(f"| {n} | {p50:.0f} | {p99:.0f} | "
                     f"{'-' if n == 'direct' else f'{p50 - d50:.0f}'} |")
    if "rate" in results:
        L.append("\n### Fixed rate, 2,000 req/s (h2load --h1 -c16 --rps=125)\n")
        L.append("| proxy | achieved req/s | p50 ms | p99 ms | CPU µs/req | proxy core idle |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for n in PROXIES:
            r = results["rate"][n]
            L.append(f"| {n} | {r['rps']:.0f} | {fmt(r['p50'], 3)} | {fmt(r['p99'], 3)} | "
                     f"{fmt(r['cpu_us_req'])} | {100 * r['idle']:.0f}% |")
    if "idle" in results:
        n = next(iter(results["idle"].values()))["n"]
        L.append(f"\n### Idle keep-alive connections: RSS with {n:,} open client connections\n")
        L.append("| proxy | RSS before (MiB) | RSS with the connections (MiB) | bytes per connection |")
        L.append("|---|---:|---:|---:|")
        for nme in PROXIES:
            r = results["idle"][nme]
            L.append(f"| {nme} | {r['before'] / 1024:.1f} | {r['after'] / 1024:.1f} | "
                     f"{r['per_conn']:.0f} |")
    if "stream" in results:
        st = results["stream"]
        L.append(f"\n### Streaming (SSE), infergate-sim --itl-ms {results['stream_itl']}: "
                 "event arrival vs direct\n")
        L.append("| path | added delay, median over events (ms) | worst event (ms) | raw p99 (ms) "
                 "| gap p50 ms | gap max ms |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for t, r in st.items():
            L.append(f"| {t} | {r['p50']:.2f} | {r['max']:.2f} | {r['raw_p99']:.2f} | "
                     f"{r['gap_p50']:.2f} | {r['gap_max']:.2f} |")
    if "streams" in results:
        r = results["streams"]
        L.append(f"\n### {r['n']:,} concurrent SSE streams (sse_load, {r['k']} tokens each, "
                 f"infergate-sim step {r['step_ms']:g} ms): per-event delay\n")
        L.append("| path | streams failed | delay p50 ms | p99 ms | p99.9 ms | max ms "
                 "| added p50 ms | added p99 ms | worst event index, median (ms) "
                 "| proxy CPU (% of a core) | proxy CPU µs/event | proxy RSS MiB (idle → peak) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        dref = r["targets"]["direct"]
        for t, x in r["targets"].items():
            direct = t == "direct"
            L.append(f"| {t} | {x['failed_streams']}/{x['attempted']} | {x['p50']:.2f} | "
                     f"{x['p99']:.2f} | {x['p999']:.2f} | {x['max']:.2f} | "
                     f"{'-' if direct else fmt(x['p50'] - dref['p50'], 2)} | "
                     f"{'-' if direct else fmt(x['p99'] - dref['p99'], 2)} | "
                     f"{x['idx_med_max']:.2f} | "
                     f"{'-' if direct else fmt(100 * x['proxy_cpu'], 0)} | "
                     f"{'-' if direct else fmt(x['cpu_us_event'], 1)} | "
                     + ("- |" if direct else
                        f"{x['rss0'] / 1024:.1f} → {x['rss_peak'] / 1024:.1f} |"))
        L.append("\nPer run p99 (ms): " + "; ".join(
            f"{t}: " + ", ".join(f"{v:.2f}" for v in x["run_p99"])
            for t, x in r["targets"].items()))
        L.append("Medians over runs: sim CPU " + ", ".join(
            f"{t} {100 * x['sim_cpu']:.0f}%" for t, x in r["targets"].items())
                 + "; proxy core idle " + ", ".join(
            f"{t} {100 * x['idle']:.0f}%" for t, x in r["targets"].items())
                 + "; sse_load CPU (max) " + ", ".join(
            f"{t} {100 * x['client_cpu']:.0f}%" for t, x in r["targets"].items())
                 + "; streams admitted within the first "
                 + ", ".join(f"{t} {x['admit_steps'] + 1}" for t, x in r["targets"].items())
                 + " steps.")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
