#!/usr/bin/env python3
"""A/B of infergate builds on the HTTP/1.1 (or h2c) point of dataplane.py (same backend, load and taskset
layout), for measuring one data-path change at a time.

Each binary (and haproxy with --haproxy, as a yardstick) proxies the same 4-port nginx backend;
the runs are interleaved (A, B, ..., A, B, ...) and each prints its CPU µs per request, split
into user and kernel time. Standard library only; uses dataplane.py's helpers.

  bench/e2e/ab.py /tmp/infergate-before build/release/proxy/infergate --haproxy
  bench/e2e/ab.py --h2c /tmp/infergate-before build/release/proxy/infergate   # the h2c point
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane as dp  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+", help="infergate binaries to compare")
    ap.add_argument("--haproxy", action="store_true", help="also run haproxy (leastconn)")
    ap.add_argument("--h2c", action="store_true",
                    help="the h2c point (h2load -c8 -m8) instead of HTTP/1.1 (wrk -c64)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4, help="seconds per run")
    a = ap.parse_args()
    miss = [t for t in ("nginx", "h2load" if a.h2c else "wrk", "taskset") +
            (("haproxy",) if a.haproxy else ())
            if not dp.shutil.which(t)]
    if miss:
        print(f"missing: {', '.join(miss)} (scripts/install-deps.sh installs them)")
        return 1
    gen_cpu, proxy_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else ("0", "0")
    work = tempfile.mkdtemp(prefix="infergate-ab-")
    procs = dp.Procs()
    try:
        bports = dp.free_ports(4)
        with open(f"{work}/backend.conf", "w") as f:
            f.write(dp.nginx_backend_conf(work, bports))
        procs.start("backend", [dp.tool("nginx"), "-c", f"{work}/backend.conf", "-g",
                                "daemon off;"], proxy_cpu, f"{work}/backend.log")
        for p in bports:
            dp.wait_port(p)
        targets = []
        for i, b in enumerate(a.binaries):
            port, admin = dp.free_ports(2)
            with open(f"{work}/ig{i}.yaml", "w") as f:
                f.write(dp.infergate_conf(port, admin, bports))
            p = procs.start(f"ig{i}", [b, "--config", f"{work}/ig{i}.yaml"], proxy_cpu,
                            f"{work}/ig{i}.log")
            dp.wait_port(port, proc=p)
            targets.append((b, port, p))
        if a.haproxy:
            port = dp.free_ports(1)[0]
            with open(f"{work}/haproxy.cfg", "w") as f:
                f.write(dp.haproxy_conf([("ab", port, bports, [])]))
            p = procs.start("haproxy", [dp.tool("haproxy"), "-db", "-f", f"{work}/haproxy.cfg"],
                            proxy_cpu, f"{work}/haproxy.log")
            dp.wait_port(port, proc=p)
            targets.append(("haproxy", port, p))
        lua = f"{work}/post.lua"
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(dp.chat_request_body())}\n")
        body_file = f"{work}/request.json"
        with open(body_file, "w") as f:
            f.write(dp.chat_request_body())

        def load(port, seconds):
            if a.h2c:
                return dp.run_h2load(port, body_file, seconds, gen_cpu)
            return dp.run_wrk(port, lua, 64, seconds, gen_cpu)

        res = {name: [] for name, _, _ in targets}
        for r in range(a.runs):
            for name, port, p in targets:
                load(port, 1)  # warm-up
                pids = dp.tree_pids(p.pid)
                c0, t0 = dp.cpu_ns(pids), dp.user_sys_ticks(pids)
                w = load(port, a.duration)
                c1, t1 = dp.cpu_ns(pids), dp.user_sys_ticks(pids)
                if not w["requests"]:
                    print(f"{name}: no requests served ({w['raw'][-300:]})")
                    return 1
                us = (c1 - c0) / 1e3 / w["requests"]
                du, ds = t1[0] - t0[0], t1[1] - t0[1]
                user = us * du / (du + ds) if du + ds else float("nan")
                res[name].append((w["requests"] / a.duration, us, user, us - user))
                print(f"run {r + 1} {name}: {w['requests'] / a.duration:.0f} req/s, {us:.2f} "
                      f"µs/req (user {user:.2f}, kernel {us - user:.2f})", flush=True)
        print()
        for name, v in res.items():
            med = [statistics.median(x[i] for x in v) for i in range(4)]
            print(f"{name}: median {med[1]:.2f} µs/req (user {med[2]:.2f}, kernel {med[3]:.2f}), "
                  f"{med[0]:.0f} req/s")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
