#!/usr/bin/env python3
"""How the API daemon answers next to idle and slow connections (issue 13's target: an honest
request answered within 1 s while 1,000 idle connections are open).

    python3 bench/api_idle_bench.py --build build [--idle 1000] [--slow 32] [--requests 200] [--tls]

Starts `chunkferry api` on 127.0.0.1 over one empty local store, then times --requests honest
requests (GET of an unknown job's progress: 404, each on a fresh connection, as a poller opens
them) three ways, in one run: alone; with --idle connections open that never send a byte; and
with those plus --slow connections that send a request head one byte every 0.5 s and never end
it (slowloris). Reported: median, p99 and max latency of each, and the ratios to the first.

--tls: the daemon speaks HTTPS (a self-signed certificate made with the openssl command), each
honest request makes a full TLS 1.3 handshake, and the slow connections trickle a TLS record
(a handshake that never completes) instead of a head.

Python 3.11 standard library only (and the openssl command, for --tls).
"""

import argparse
import json
import os
import resource
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def make_certificate(tmp):
    """A self-signed certificate for 127.0.0.1 and its key (mode 0600): (cert, key)."""
    cert, key = os.path.join(tmp, "api.crt"), os.path.join(tmp, "api.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=bench",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


def start_api(cli, tmp, tls):
    store = os.path.join(tmp, "store")
    subprocess.run([cli, "store", "init", "--store", store, "--quiet"], check=True)
    config = os.path.join(tmp, "registry.json")
    with open(config, "w") as f:
        json.dump({"backupStorages": [{"uuid": secrets.token_hex(16), "name": "s", "store": store}],
                   "sessions": [secrets.token_hex(16)]}, f)
    os.chmod(config, 0o600)
    ready = os.path.join(tmp, "ready")
    extra = ["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []
    proc = subprocess.Popen([cli, "api", "--config", config, "--listen", "127.0.0.1:0",
                             "--ready-file", ready] + extra, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(500):
        if os.path.exists(ready) and open(ready).read().strip():
            host, port = open(ready).read().strip().rsplit(":", 1)
            return proc, (host, int(port))
        time.sleep(0.02)
    proc.kill()
    sys.exit("the API daemon did not start")


def honest(addr, n, context):
    """Latencies (s) of n requests, each on a fresh connection (TLS with `context`)."""
    path = "/chunkferry/v1/api-jobs/%s/progress" % secrets.token_hex(16)
    request = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode()
    out = []
    for _ in range(n):
        start = time.monotonic()
        with socket.create_connection(addr, timeout=60) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = context.wrap_socket(raw, server_hostname=addr[0]) if context else raw
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
    ap.add_argument("--tls", action="store_true", help="serve and call HTTPS")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cli = os.path.join(args.build, "tools", "chunkferry")
    with tempfile.TemporaryDirectory() as tmp:
        tls = make_certificate(tmp) if args.tls else None
        context = None
        if tls:
            context = ssl.create_default_context(cafile=tls[0])
        proc, addr = start_api(cli, tmp, tls)
        try:
            results = {"alone": summary(honest(addr, args.requests, context))}
            idle = [socket.create_connection(addr) for _ in range(args.idle)]
            time.sleep(0.5)
            results["idle"] = summary(honest(addr, args.requests, context))
            slow = [socket.create_connection(addr) for _ in range(args.slow)]
            stop = threading.Event()

            def trickle():
                head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
                if args.tls:  # a handshake record announcing 16 KiB, sent a byte at a time
                    head = b"\x16\x03\x01\x40\x00" + b"a" * 1000
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
            results["idle+slow"] = summary(honest(addr, args.requests, context))
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
    print(json.dumps({"tls": args.tls, "idle": args.idle, "slow": args.slow, "requests": args.requests,
                      "results": results}))


if __name__ == "__main__":
    main()
