#!/usr/bin/env python3
"""How the API daemon answers next to idle and slow connections (issue 13's target: an honest
request answered within 1 s while 1,000 idle connections are open).

    python3 bench/api_idle_bench.py --build build [--idle 1000] [--slow 32] [--requests 200]

Starts `chunkferry api` on 127.0.0.1 over one empty local store, then times --requests honest
requests (GET of an unknown job's progress: 404, each on a fresh connection, as a poller opens
them) three ways, in one run: alone; with --idle connections open that never send a byte; and
with those plus --slow connections that send a request head one byte every 0.5 s and never end
it (slowloris). Reported: median, p99 and max latency of each, and the ratios to the first.

Python 3.11 standard library only.
"""

import argparse
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def start_api(cli, tmp):
    store = os.path.join(tmp, "store")
    subprocess.run([cli, "store", "init", "--store", store, "--quiet"], check=True)
    config = os.path.join(tmp, "registry.json")
    with open(config, "w") as f:
        json.dump({"backupStorages": [{"uuid": secrets.token_hex(16), "name": "s", "store": store}],
                   "sessions": [secrets.token_hex(16)]}, f)
    os.chmod(config, 0o600)
    ready = os.path.join(tmp, "ready")
    proc = subprocess.Popen([cli, "api", "--config", config, "--listen", "127.0.0.1:0",
                             "--ready-file", ready], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(500):
        if os.path.exists(ready) and open(ready).read().strip():
            host, port = open(ready).read().strip().rsplit(":", 1)
            return proc, (host, int(port))
        time.sleep(0.02)
    proc.kill()
    sys.exit("the API daemon did not start")


def honest(addr, n):
    """Latencies (s) of n requests, each on a fresh connection."""
    path = "/chunkferry/v1/api-jobs/%s/progress" % secrets.token_hex(16)
    request = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode()
    out = []
    for _ in range(n):
        start = time.monotonic()
        with socket.create_connection(addr, timeout=60) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        out.append(time.monotonic() - start)
        if not data.startswith(b"HTTP/1.1 404"):
            sys.exit("unexpected answer: %r" % data[:80])
    return out


def summary(lat):
    lat = sorted(lat)
    return {"median_ms": round(statistics.median(lat) * 1000, 3),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 3),
            "max_ms": round(lat[-1] * 1000, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cli = os.path.join(args.build, "tools", "chunkferry")
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_api(cli, tmp)
        try:
            results = {"alone": summary(honest(addr, args.requests))}
            idle = [socket.create_connection(addr) for _ in range(args.idle)]
            time.sleep(0.5)
            results["idle"] = summary(honest(addr, args.requests))
            slow = [socket.create_connection(addr) for _ in range(args.slow)]
            stop = threading.Event()

            def trickle():
                head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
                i = 0
                while not stop.is_set() and i < len(head):
                    for s in slow:
                        try:
                            s.send(head[i:i + 1])
                        except OSError:
                            pass
                    i += 1
                    stop.wait(0.5)

            t = threading.Thread(target=trickle)
            t.start()
            time.sleep(1.0)
            results["idle+slow"] = summary(honest(addr, args.requests))
            stop.set()
            t.join()
            for s in idle + slow:
                s.close()
        finally:
            proc.terminate()
            proc.wait()
    base = results["alone"]["median_ms"]
    print("%-10s %10s %10s %10s %8s" % ("phase", "median ms", "p99 ms", "max ms", "ratio"))
    for phase, r in results.items():
        print("%-10s %10.3f %10.3f %10.3f %8.2f" % (phase, r["median_ms"], r["p99_ms"],
                                                    r["max_ms"], r["median_ms"] / base))
    print(json.dumps({"idle": args.idle, "slow": args.slow, "requests": args.requests,
                      "results": results}))


if __name__ == "__main__":
    main()
