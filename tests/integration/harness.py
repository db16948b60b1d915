"""Shared machinery of the integration tests: real binaries, really started, on port 0.

Everything here is standard library only. The tests drive the gateway with real clients (curl,
raw sockets, http.client) and inspect the simulator through its /sim/ controls.

Rules the helpers follow (DESIGN.md, "Tests"):
  - every process listens on port 0 and says where in a ready line, parsed with a deadline;
  - stdout/stderr of every child are drained by threads (a pipe never blocks the child) and
    kept, so a failing test prints the logs of the processes it used;
  - no sleeps for synchronisation: wait_until() polls a condition against a deadline;
  - cleanup stops everything and fails the test if the gateway died of a signal (a crash).

Environment: INFERGATE_BIN, INFERGATE_SIM_BIN (the two binaries), INFERGATE_FIXTURES. Without
them the debug build tree of this checkout is used, so `python3 test_x.py -v` works as is.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]


def _binary(env_name: str, candidates: list[str]) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    for c in candidates:
        p = REPO / c
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return str(REPO / candidates[0])


GATEWAY_BIN = _binary("INFERGATE_BIN", ["build/debug/proxy/infergate", "build/release/proxy/infergate"])
SIM_BIN = _binary("INFERGATE_SIM_BIN", ["build/debug/sim/infergate-sim",
                                        "build/release/sim/infergate-sim"])
FIXTURES = Path(os.environ.get("INFERGATE_FIXTURES", REPO / "tests" / "fixtures"))
CURL = shutil.which("curl") or "curl"

START_TIMEOUT = 15.0  # seconds for a process to print its ready line (debug builds are slow)


# --------------------------------------------------------------------------------------------
# Polling


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Polls predicate() until it returns something truthy; returns it. Raises AssertionError
    with `message` (and the last exception the predicate raised, if any) at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - a predicate may fail while a server starts
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Child processes


class ManagedProcess:
    """A child process whose stdout and stderr are read line by line by two threads."""

    def __init__(self, name: str, argv: list[str], cwd: str | None = None):
        self.name = name
        self.argv = argv
        self.lines: list[tuple[float, str, str]] = []  # (time, "out"/"err", text)
        self._cond = threading.Condition()
        self._closed_streams = 0
        self.killed_by_us = False
        self.expect_exit = False  # set when a test makes the process exit on purpose
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, pipe, tag: str) -> None:
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append((time.monotonic(), tag, text))
                self._cond.notify_all()
        pipe.close()
        with self._cond:
            self._closed_streams += 1
            self._cond.notify_all()

    # ---- output

    def output(self, tag: str | None = None) -> str:
        with self._cond:
            return "\n".join(t for _, s, t in self.lines if tag is None or s == tag)

    def stdout_text(self) -> str:
        return self.output("out")

    def stderr_text(self) -> str:
        return self.output("err")

    def wait_for_line(self, pattern: str, tag: str | None = None, timeout: float = START_TIMEOUT,
                      start: int = 0) -> re.Match:
        """Waits for a line matching `pattern` (re.search), from line index `start` on."""
        return self.wait_for_line_at(pattern, tag, timeout, start)[0]

    def wait_for_line_at(self, pattern: str, tag: str | None = None,
                         timeout: float = START_TIMEOUT, start: int = 0) -> tuple[re.Match, int]:
        """Like wait_for_line; also returns the index of the matching line."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    _, s, text = self.lines[i]
                    i += 1
                    if tag is not None and s != tag:
                        continue
                    m = rx.search(text)
                    if m:
                        return m, i - 1
                if self._closed_streams == 2:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        self.proc.poll()
        raise AssertionError(
            f"{self.name}: no line matching {pattern!r} within {timeout:.1f}s "
            f"(exit code {self.proc.returncode}); output:\n{self.log_tail()}")

    def line_count(self) -> int:
        with self._cond:
            return len(self.lines)

    def log_tail(self, n: int = 120) -> str:
        with self._cond:
            tail = self.lines[-n:]
            t0 = self.lines[0][0] if self.lines else 0.0
        return "\n".join(f"  [{self.name} {s} +{t - t0:7.3f}s] {text}" for t, s, text in tail)

    # ---- life cycle

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def signal(self, signo: int) -> None:
        if self.alive():
            self.proc.send_signal(signo)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(timeout=2)
        return rc

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed_by_us = True
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(timeout=2)
        return self.proc.returncode

    def crashed(self) -> bool:
        """Died of a signal we did not send (SIGSEGV, SIGABRT, ...)."""
        rc = self.proc.poll()
        return rc is not None and rc < 0 and not self.killed_by_us and \
            -rc not in (signal.SIGTERM, signal.SIGINT)


class Sim(ManagedProcess):
    """infergate-sim on port 0."""

    def __init__(self, *args: str, pod_name: str = "sim", model: str = "test-model",
                 served: Iterable[str] | None = None, lora: Iterable[str] | None = None,
                 fast: bool = True):
        argv = [SIM_BIN, "--port", "0", "--host", "127.0.0.1", "--model", model,
                "--pod-name", pod_name, "--seed", "1"]
        if served:
            argv += ["--served-model-name", *served]
        if lora:
            argv += ["--lora-modules", *[f"{n}=/adapters/{n}" for n in lora]]
        if fast:
            # Tests that care about timing pass --ttft-ms/--itl-ms themselves (later flags win).
            argv += ["--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "4"]
        argv += list(args)
        super().__init__(f"sim:{pod_name}", argv)
        self.pod_name = pod_name
        m = self.wait_for_line(r"infergate-sim listening on (\S+):(\d+)", tag="out")
        self.host, self.port = m.group(1), int(m.group(2))
        self.address = f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def get_json(self, path: str) -> Any:
        status, _, body = http_request(self.port, "GET", path)
        if status != 200:
            raise AssertionError(f"{self.name} GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def stats(self) -> dict:
        return self.get_json("/sim/stats")

    def requests(self) -> list[dict]:
        return self.get_json("/sim/requests")["requests"]

    def v1_requests(self) -> list[dict]:
        return [r for r in self.requests() if r.get("path", "").startswith("/v1/")]

    def reset(self) -> None:
        status, _, body = http_request(self.port, "POST", "/sim/reset", body=b"")
        if status // 100 != 2:
            raise AssertionError(f"{self.name} POST /sim/reset: {status} {body[:300]!r}")

    def set_metrics(self, **overrides: Any) -> dict:
        """POST /sim/metrics: waiting=N, running=N, kv_usage=F fix the reported values; None
        clears one. Returns the overrides now in force."""
        status, _, body = http_request(self.port, "POST", "/sim/metrics",
                                       body=json.dumps(overrides).encode(),
                                       headers={"Content-Type": "application/json"})
        if status // 100 != 2:
            raise AssertionError(f"{self.name} POST /sim/metrics: {status} {body[:300]!r}")
        return json.loads(body)


class Gateway(ManagedProcess):
    """infergate with a generated configuration, listeners and admin on port 0."""

    def __init__(self, config_text: str, workdir: str, *extra: str, name: str = "gateway",
                 wait_ready: bool = True, listeners: int = 1):
        self.config_path = os.path.join(workdir, f"{name}-{time.monotonic_ns()}.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        argv = [GATEWAY_BIN, "--config", self.config_path, "--log-level", "debug",
                "--log-format", "text", *extra]
        super().__init__(name, argv, cwd=workdir)
        self.ports: list[int] = []
        self.admin_port: int | None = None
        if wait_ready:
            start = 0
            for _ in range(listeners):
                m, index = self.wait_for_line_at(
                    r"listener ready .*address=\"?([^\s\"]+):(\d+)\"?", tag="err", start=start)
                start = index + 1
                self.ports.append(int(m.group(2)))
            m = self.wait_for_line(r"admin ready .*address=\"?([^\s\"]+):(\d+)", tag="err")
            self.admin_port = int(m.group(2))
            self.port = self.ports[0]

    def write_config(self, text: str) -> None:
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}{path}"

    # ---- admin

    def admin(self, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
        return http_request(self.admin_port, method, path)

    def admin_json(self, path: str) -> Any:
        status, headers, body = self.admin(path)
        if status != 200:
            raise AssertionError(f"admin GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def metrics(self) -> "Metrics":
        status, _, body = self.admin("/metrics")
        if status != 200:
            raise AssertionError(f"admin GET /metrics: {status}")
        return Metrics(body.decode())

    def endpoints(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.admin_json("/debug/endpoints")["endpoints"]}

    def total_in_flight(self) -> int:
        return sum(e["in_flight"] for e in self.endpoints().values())

    def pool_endpoints(self, pool: str) -> dict[str, dict]:
        """/debug/endpoints of one pool (key "namespace/name"; a bare name means "default/"),
        by endpoint name: endpoints() keeps one entry per name when pools share endpoints."""
        key = pool if "/" in pool else f"default/{pool}"
        return {e["name"]: e for e in self.admin_json("/debug/endpoints")["endpoints"]
                if e["pool"] == key}


# --------------------------------------------------------------------------------------------
# Configuration


def proxy_config(endpoints: list[dict], limits: dict | None = None, workers: int = 2,
                 listeners: list[dict] | None = None, admin: dict | None = None,
                 scheduler: dict | None = None, scrape: bool = True,
                 name: str = "test") -> dict:
    """scrape=False turns off the model-server metrics scraper: for endpoints that are not
    model servers (RefusingPort, FakeUpstream), so that only the data path judges them."""
    base_limits = {"headerTimeout": "2s", "bodyTimeout": "2s", "upstreamResponseTimeout": "5s",
                   "upstreamConnectTimeout": "1s", "maxRequestBodyBytes": 1048576,
                   "maxRequestHeaderBytes": 8192, "maxRetries": 2, "drainTimeout": "10s",
                   "idleTimeout": "10s", "upstreamIdleTimeout": "5s"}
    base_limits.update(limits or {})
    spec: dict[str, Any] = {
        "workers": workers,
        "listeners": listeners or [{"address": "127.0.0.1:0"}],
        "admin": admin or {"address": "127.0.0.1:0"},
        "endpoints": endpoints,
        "limits": base_limits,
    }
    if scheduler:
        spec["scheduler"] = scheduler
    if not scrape:
        spec["modelServerMetrics"] = {"enabled": False}
    return {"apiVersion": "infergate.io/v1alpha1", "kind": "ProxyConfig",
            "metadata": {"name": name}, "spec": spec}


def endpoint(name: str, address: str, app: str = "llama", **labels: str) -> dict:
    return {"name": name, "address": address, "labels": {"app": app, **labels}}


def inference_pool(name: str, app: str | None = None, failure_mode: str = "FailClose") -> dict:
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app or name}},
                     "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002},
                                           "failureMode": failure_mode}}}


def inference_model(model_name: str, pool: str, targets: list[tuple[str, int]] | None = None,
                    criticality: str | None = "Critical", name: str | None = None) -> dict:
    spec: dict[str, Any] = {"modelName": model_name, "poolRef": {"name": pool}}
    if criticality:
        spec["criticality"] = criticality
    if targets:
        spec["targetModels"] = [{"name": n, "weight": w} for n, w in targets]
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
            "metadata": {"name": name or re.sub(r"[^a-z0-9-]", "-", model_name.lower())},
            "spec": spec}


def render(docs: Iterable[dict | str]) -> str:
    """A multi-document YAML file. Dicts are written as JSON (a subset of YAML), one key per line
    so that diagnostics point somewhere useful; strings are written verbatim."""
    parts = []
    for d in docs:
        parts.append(d if isinstance(d, str) else json.dumps(d, indent=2))
    return "\n---\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Sockets nobody answers on


class RefusingPort:
    """A port that refuses connections for as long as this object lives: bound, never
    listening, so nobody else can take it and every connect gets a RST (ECONNREFUSED)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


class FakeUpstream:
    """A misbehaving HTTP server (for failures the simulator has no flag for).

    mode "reset":   accept, read the request, close with RST before any response byte.
    mode "garbage": accept, read the request, answer bytes that are not HTTP, close.
    mode "silent":  accept, read the request, never answer (until closed).
    mode "script":  accept, read the request (headers and Content-Length body), answer
                    `response` in pieces of `chunk` bytes with `delay` seconds between them,
                    close. The last request received is kept in .last_request. With
                    `cork`, the pieces are held back (TCP_CORK) and the close sends them in
                    the same segment as the FIN: the close arrives together with the data.
    """

    def __init__(self, mode: str, response: bytes = b"", chunk: int = 0, delay: float = 0.0,
                 cork: bool = False):
        self.mode = mode
        self.response = response
        self.chunk = chunk
        self.delay = delay
        self.cork = cork
        self.last_request = b""
        self.accepted = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if self.mode == "script":
                head, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                want = int(m.group(1)) if m else 0
                while len(body) < want:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                if head.startswith(b"GET "):  # a metrics scrape, not the request under test
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    conn.close()
                    return
                self.last_request = head + b"\r\n\r\n" + body
                if self.cork:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                else:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                step = self.chunk or len(self.response)
                for i in range(0, len(self.response), step):
                    conn.sendall(self.response[i:i + step])
                    if self.delay:
                        time.sleep(self.delay)
                conn.close()
            elif self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
            elif self.mode == "garbage":
                conn.sendall(b"THIS IS NOT HTTP\r\n\r\n")
                conn.close()
            else:
                self._open.append(conn)
        except OSError:
            conn.close()

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self._open:
            c.close()


# --------------------------------------------------------------------------------------------
# HTTP clients


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]           # lowercase name -> value (last one wins)
    header_list: list[tuple[str, str]]
    body: bytes
    rc: int = 0                       # curl's exit code
    stderr: str = ""
    elapsed: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __str__(self) -> str:
        return (f"HTTP {self.status} (curl rc={self.rc}) headers={self.header_list} "
                f"body={self.body[:600]!r} stderr={self.stderr.strip()[:300]!r}")


def _split_head(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Parses curl -i output: one or more header blocks (interim 1xx first), then the body."""
    status, headers, rest = 0, [], raw
    while rest.startswith(b"HTTP/"):
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            head, rest = rest, b""
        else:
            head, rest = rest[:end], rest[end + 4:]
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        if not (100 <= status < 200):
            break
    return status, headers, rest


def _body_bytes(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode()
    if isinstance(body, str):
        return body.encode()
    return body


def curl(url: str, body: Any = None, method: str | None = None,
         headers: dict[str, str | None] | list[tuple[str, str | None]] | None = None,
         timeout: float = 15,
         args: Iterable[str] = (), content_type: str | None = "application/json") -> HttpResult:
    """One request with curl (HTTP/1.1). body: bytes, str, or a JSON value; sent with
    --data-binary from stdin, so any size works. Returns status, headers, body and curl's rc."""
    data = _body_bytes(body)
    argv = [CURL, "-sS", "-i", "--http1.1", "--max-time", str(timeout), "-o", "-"]
    if method:
        argv += ["-X", method]
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if data is not None:
        argv += ["--data-binary", "@-"]
        if content_type and not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("Content-Type", content_type))
    for k, v in hdrs:
        # None removes a header curl would send (Expect, Content-Type); "" sends it empty.
        argv += ["-H", f"{k}:" if v is None else f"{k}: {v}" if v != "" else f"{k};"]
    argv += list(args)
    argv.append(url)
    t0 = time.monotonic()
    p = subprocess.run(argv, input=data if data is not None else b"", capture_output=True,
                       timeout=timeout + 10)
    elapsed = time.monotonic() - t0
    status, hl, rest = _split_head(p.stdout)
    return HttpResult(status, dict(hl), hl, rest, p.returncode, p.stderr.decode("utf-8", "replace"),
                      elapsed)


@dataclass
class StreamResult:
    status: int
    headers: dict[str, str]
    events: list[tuple[float, str]]    # (seconds since the request was started, "data: ..." text)
    raw: bytes
    rc: int
    stderr: str
    elapsed: float
    first_byte_at: float | None = None

    def data(self) -> list[str]:
        return [e[len("data:"):].strip() for _, e in self.events if e.startswith("data:")]

    def json_events(self) -> list[dict]:
        return [json.loads(d) for d in self.data() if d != "[DONE]"]

    def done(self) -> bool:
        return bool(self.data()) and self.data()[-1] == "[DONE]"

    def __str__(self) -> str:
        return (f"stream HTTP {self.status} (curl rc={self.rc}) events={len(self.events)} "
                f"raw={self.raw[:800]!r} stderr={self.stderr.strip()[:300]!r}")


class CurlStream:
    """`curl -N` in the background; its output is read as it arrives, each SSE line stamped
    with its arrival time. Use .wait() for the StreamResult."""

    def __init__(self, url: str, body: Any, headers: dict[str, str] | None = None,
                 timeout: float = 30, args: Iterable[str] = ()):
        data = _body_bytes(body)
        argv = [CURL, "-sS", "-N", "-i", "--http1.1", "--max-time", str(timeout), "-o", "-",
                "--data-binary", "@-", "-H", "Content-Type: application/json"]
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        argv += list(args)
        argv.append(url)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.proc.stdin.write(data)
        self.proc.stdin.close()
        self._cond = threading.Condition()
        self.raw = b""
        self.lines: list[tuple[float, bytes]] = []
        self.first_byte_at: float | None = None
        self._eof = False
        self._stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            now = time.monotonic() - self.t0
            if not chunk:
                break
            with self._cond:
                self.raw += chunk
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self.lines.append((now, line.rstrip(b"\r")))
                self._cond.notify_all()
        self.proc.stdout.close()
        with self._cond:
            if pending:
                self.lines.append((time.monotonic() - self.t0, pending))
            self._eof = True
            self._cond.notify_all()

    def _read_err(self) -> None:
        self._stderr = self.proc.stderr.read()
        self.proc.stderr.close()

    def wait_for_data(self, count: int = 1, timeout: float = 10) -> None:
        """Waits until `count` SSE data lines have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for _, l in self.lines if l.startswith(b"data:")) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"stream: fewer than {count} events; raw={self.raw[:800]!r}")
                self._cond.wait(left)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float = 30) -> StreamResult:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        with self._cond:
            while not self._eof:
                self._cond.wait(5)
        elapsed = time.monotonic() - self.t0
        status, hl, _ = _split_head(self.raw)
        events = []
        seen_blank_after_head = False
        for t, line in self.lines:
            text = line.decode("utf-8", "replace")
            if not seen_blank_after_head:
                if text == "":
                    seen_blank_after_head = True
                continue
            if text.startswith("data:"):
                events.append((t, text))
        first = next((t for t, l in self.lines if l.startswith(b"data:")), None)
        return StreamResult(status, dict(hl), events, self.raw, rc,
                            self._stderr.decode("utf-8", "replace"), elapsed, first)


def curl_stream(url: str, body: Any, headers: dict[str, str] | None = None,
                timeout: float = 30) -> StreamResult:
    return CurlStream(url, body, headers, timeout).wait(timeout + 5)


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10,
                 host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """A plain http.client request (admin endpoints, sim controls, load loops)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, data
    finally:
        conn.close()


def request_bytes(method: str, path: str, body: Any = None, headers: list[tuple[str, str]] |
                  dict[str, str] | None = None, host: str = "127.0.0.1") -> bytes:
    """An HTTP/1.1 request as bytes, for raw sockets (Content-Length set when there is a body)."""
    data = _body_bytes(body)
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if data is not None:
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            lines.append("Content-Type: application/json")
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            lines.append(f"Content-Length: {len(data)}")
    lines += [f"{k}: {v}" for k, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b"")


class RawConnection:
    """A client socket with an HTTP/1.1 response reader (Content-Length, chunked, or until
    close), for what curl cannot do: pipelining, slow senders, exact bytes."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed mid-line; have {self.buf[:200]!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed: wanted {n} bytes, have {len(self.buf)}")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_request: bool = False) -> HttpResult:
        while True:
            status_line = self._read_line()
            if not status_line.startswith(b"HTTP/1."):
                raise ConnectionError(f"not an HTTP response: {status_line[:200]!r}")
            status = int(status_line.split()[1])
            hl: list[tuple[str, str]] = []
            while True:
                line = self._read_line()
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                hl.append((name.strip().lower(), value.strip()))
            if 100 <= status < 200:
                continue
            break
        headers = dict(hl)
        body = b""
        if head_request or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():
                        pass
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return HttpResult(status, headers, hl, body)

    def at_eof(self, timeout: float = 5) -> bool:
        """True once the peer closed (FIN or RST) within `timeout` and sent nothing more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL.findall(m.group(3) or "")}
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def get(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum(v for n, l, v in self.samples
                   if n == name and all(l.get(k) == str(want) for k, want in labels.items()))

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(l, v) for n, l, v in self.samples if n == name]


# --------------------------------------------------------------------------------------------
# Request bodies


def fixture(name: str) -> bytes:
    with open(FIXTURES / "openai" / name, "rb") as f:
        return f.read()


def http_response(body: bytes, content_type: str, chunked: bool = False,
                  status: str = "200 OK") -> bytes:
    """A whole HTTP/1.1 response (Connection: close) for FakeUpstream("script")."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
    if not chunked:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    out = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    for i in range(0, len(body), 100):
        piece = body[i:i + 100]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def completion(model: str, prompt: str = "Hello there", **extra: Any) -> dict:
    return {"model": model, "prompt": prompt, "max_tokens": 4, **extra}


def chat(model: str, content: str = "Hello there", **extra: Any) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def parse_sse_data(raw: bytes) -> list[str]:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            out.append(line[5:].strip())
    return out


# --------------------------------------------------------------------------------------------
# Test case base


class GatewayTestCase(unittest.TestCase):
    """Starts processes with automatic cleanup, prints their logs when a test fails, and fails a
    test if the gateway crashed (died of a signal) or died unexpectedly."""

    maxDiff = 4000
    _class_procs: list[ManagedProcess] = []
    _class_tmp: str | None = None

    # ---- class-level fixtures (shared by the tests of a class)

    @classmethod
    def class_tmp(cls) -> str:
        if cls._class_tmp is None:
            cls._class_tmp = tempfile.mkdtemp(prefix="infergate-it-")
            cls.addClassCleanup(shutil.rmtree, cls._class_tmp, True)
        return cls._class_tmp

    @classmethod
    def class_sim(cls, *args: str, **kw: Any) -> Sim:
        sim = Sim(*args, **kw)
        cls._register_class(sim)
        return sim

    @classmethod
    def class_gateway(cls, config: str | list, *extra: str, **kw: Any) -> Gateway:
        text = config if isinstance(config, str) else render(config)
        gw = Gateway(text, cls.class_tmp(), *extra, **kw)
        cls._register_class(gw)
        return gw

    @classmethod
    def class_resource(cls, obj: Any) -> Any:
        cls.addClassCleanup(obj.close)
        return obj

    @classmethod
    def _register_class(cls, proc: ManagedProcess) -> None:
        if "_class_procs" not in cls.__dict__:
            cls._class_procs = []
        cls._class_procs.append(proc)
        cls.addClassCleanup(_stop_and_check, proc)

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._class_tmp = None
        cls._class_procs = []
        try:
            cls.start_class_fixtures()
        except BaseException:
            for p in cls._class_procs:
                sys.stderr.write(f"\n--- log of {p.name} ---\n{p.log_tail()}\n")
            raise

    @classmethod
    def start_class_fixtures(cls) -> None:
        """Override: start the class's shared sims and gateway."""

    # ---- per-test fixtures

    def setUp(self) -> None:
        super().setUp()
        self._procs: list[ManagedProcess] = []
        self._tmp: str | None = None

    def tmp(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="infergate-it-")
            self.addCleanup(shutil.rmtree, self._tmp, True)
        return self._tmp

    def sim(self, *args: str, **kw: Any) -> Sim:
        s = Sim(*args, **kw)
        self._procs.append(s)
        self.addCleanup(_stop_and_check, s)
        return s

    def gateway(self, config: str | list, *extra: str, **kw: Any) -> Gateway:
        text = config if isinstance(config, str) else render(config)
        gw = Gateway(text, self.tmp(), *extra, **kw)
        self._procs.append(gw)
        self.addCleanup(_stop_and_check, gw)
        return gw

    def resource(self, obj: Any) -> Any:
        self.addCleanup(obj.close)
        return obj

    def tearDown(self) -> None:
        procs = list(self._procs) + list(type(self)._class_procs)
        failed = self._test_failed()
        dead = [p for p in procs if isinstance(p, Gateway) and not p.expect_exit and not p.alive()]
        if failed or dead:
            for p in procs:
                sys.stderr.write(f"\n--- log of {p.name} (exit code {p.returncode}) ---\n"
                                 f"{p.log_tail()}\n")
        super().tearDown()
        if dead:
            names = ", ".join(f"{p.name} (exit code {p.returncode})" for p in dead)
            raise AssertionError(f"gateway died during the test: {names}")

    def _test_failed(self) -> bool:
        # outcome.success cannot be trusted inside tearDown (3.11 resets it for each part);
        # the result's failure lists can.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        return any(getattr(t, "test_case", t) is self
                   for t, _ in list(result.failures) + list(result.errors))

    # ---- assertions

    def assertOpenAIError(self, res: HttpResult, status: int, code: str | None = None,
                          type_: str | None = None) -> dict:
        """The gateway's own error: status, content-type application/json, and OpenAI's
        envelope {"error": {"message", "type", "param", "code"}}."""
        self.assertEqual(res.status, status, str(res))
        self.assertTrue(res.headers.get("content-type", "").startswith("application/json"), str(res))
        try:
            doc = json.loads(res.body)
        except ValueError:
            self.fail(f"error body is not JSON: {res}")
        self.assertIsInstance(doc, dict, str(res))
        self.assertEqual(set(doc.keys()), {"error"}, str(res))
        err = doc["error"]
        self.assertEqual(set(err.keys()), {"message", "type", "param", "code"}, str(res))
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"], "empty error message")
        self.assertIsInstance(err["type"], str)
        self.assertTrue(err["param"] is None or isinstance(err["param"], str), str(res))
        if code is not None:
            self.assertEqual(err["code"], code, str(res))
        if type_ is not None:
            self.assertEqual(err["type"], type_, str(res))
        return err


def _stop_and_check(proc: ManagedProcess) -> None:
    rc = proc.stop()
    if proc.crashed():
        sys.stderr.write(f"\n--- log of {proc.name} ---\n{proc.log_tail(200)}\n")
        raise AssertionError(f"{proc.name} crashed: killed by signal {-rc}")
    if isinstance(proc, Gateway) and not proc.expect_exit and not proc.killed_by_us and rc != 0:
        sys.stderr.write(f"\n--- log of {proc.name} ---\n{proc.log_tail(200)}\n")
        raise AssertionError(f"{proc.name} exited with {rc} on SIGTERM (expected 0)")
    if proc.killed_by_us and isinstance(proc, Gateway):
        sys.stderr.write(f"\n--- log of {proc.name} ---\n{proc.log_tail(200)}\n")
        raise AssertionError(f"{proc.name} did not stop within 10s of SIGTERM (killed)")


def main(needs_sim: bool = True) -> None:
    needed = [GATEWAY_BIN, SIM_BIN] if needs_sim else [GATEWAY_BIN]
    missing = [b for b in needed if not os.access(b, os.X_OK)]
    if missing:
        sys.stderr.write(f"integration tests: binaries not found: {missing}\n"
                         "set INFERGATE_BIN / INFERGATE_SIM_BIN or build the debug preset\n")
        sys.exit(1)
    unittest.main()
