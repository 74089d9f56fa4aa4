#!/usr/bin/env python3
"""Sync over loopback: chunkferry sync to a store daemon, against cp -r and rsync, in one run.

    python3 bench/sync_bench.py --build build --root-size 2G --data-size 1G --runs 3
    python3 bench/sync_bench.py --build build --quick        # smoke test: 256M + 128M, 1 run

Scenarios (each timed by wall clock, page cache dropped before each timed process when allowed):
  full          chunkferry sync of group v1 from a local store to an empty store served by
                `chunkferry serve` on 127.0.0.1 (full verification on)
                  vs  cp -r of the source store, then fsync of every copied file   (target >= 0.8x)
                  vs  rsync -a --fsync of the source store to an rsync daemon on 127.0.0.1
                  vs  rsync -a --fsync of the raw v1 images to that rsync daemon   (target >= 5x)
  incremental   the destination holds v1; chunkferry sync of group v2
                  vs  rsync -a --fsync of the source store (now holding v2) to the rsync copy
                  vs  rsync -a -I --fsync --inplace of the raw v2 images over the v1 images (target >= 5x;
                      -I: the generator writes v1 and v2 in the same second, and rsync's
                      size+mtime quick check would skip them instead of sending the delta)
                and bytes on the wire against the compressed size of v2's new chunks (what the
                v2 import added to the source store)                                (<= 1.05x)
  Peak RSS of the sync client (wait4) and of the daemon (VmHWM at its end): target < 256 MiB.
With --tls, each run also serves a second empty store over TLS 1.3 (`serve --tls-cert`, a P-256
certificate made with `openssl req`; the client pins it) and times the same full and incremental
syncs into it, alternated with the plain ones: throughput ratios TLS / plain (targets >= 0.7 full,
>= 0.9 incremental), and the CPU each side spent.
With --pin, chunkferry's client runs on CPU 0 and its daemons on CPU 1 (taskset), as two one-core
nodes would, instead of sharing both cores (the yardsticks stay unpinned).

Needs rsync (apt-get install rsync). Python 3.11 standard library only; shares macro.py's runner.
"""

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import macro  # noqa: E402  (same directory)

MIB = 1 << 20
MB = 1_000_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RsyncDaemon:
    def __init__(self, root, work):
        self.port = free_port()
        conf = os.path.join(work, "rsyncd.conf")
        with open(conf, "w") as f:
            f.write(f"use chroot = false\npid file = {work}/rsyncd.pid\n"
                    f"[dst]\npath = {root}\nread only = false\nuid = root\ngid = root\n")
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                                      f"--port={self.port}", "--address=127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsync daemon did not start")

    def url(self, sub):
        return f"rsync://127.0.0.1:{self.port}/dst/{sub}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    macro.add_common_args(ap, "sync")
    ap.add_argument("--connections", default="2")
    ap.add_argument("--tls", action="store_true",
                    help="also sync into a daemon that speaks TLS 1.3, alternated with plain TCP")
    ap.add_argument("--pin", action="store_true",
                    help="chunkferry's client on CPU 0, its daemons on CPU 1 (taskset)")
    args = macro.parse_common_args(ap)
    client_cpu = ["taskset", "-c", "0"] if args.pin else []
    daemon_cpu = ["taskset", "-c", "1"] if args.pin else []
    for tool in ("rsync", "cp", "sync") + (("taskset",) if args.pin else ()):
        if shutil.which(tool) is None:
            sys.exit(f"sync_bench.py: {tool} is not installed (apt-get install {tool})")
    build = os.path.abspath(args.build)
    cf = os.path.join(build, "tools", "chunkferry")
    gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
    work = macro.make_work_dir(args.work, "sync", "sync_bench.py")
    runner = macro.Runner(want_cold=not args.warm)
    common = ["--json", "--quiet", "--io", args.io]
    result = macro.result_header(runner)
    try:
        images = os.path.join(work, "images")
        runner.run([gen, "--out", images, "--root-size", args.root_size, "--data-size",
                    args.data_size, "--versions", "2", "--seed", str(args.seed)], timed=False)
        vols = [("root.img", "Root"), ("data1.img", "Data")]
        logical = sum(os.stat(os.path.join(images, "v1", f)).st_size for f, _ in vols)
        group = {v: macro.uuid_of(f"sync-group-{v}") for v in ("v1", "v2")}
        src = os.path.join(work, "src")
        runner.run([cf, "store", "init", "--store", src, "--quiet"], timed=False)
        stored = {}
        for v in ("v1", "v2"):
            stored[v] = 0
            if v == "v2":  # the v1-only copy of the source store, for the cp yardstick
                pass
            for f, vtype in vols:
                r = macro.run_json(runner, [cf, "import", "--store", src, "--image",
                                            os.path.join(images, v, f), "--group", group[v],
                                            "--vm", macro.VM_UUID, "--volume",
                                            macro.uuid_of(f"vol-{f}"), "--type", vtype] + common)
                stored[v] += r["json"]["storedBytes"]
            if v == "v1":
                src_v1 = os.path.join(work, "src-v1")
                runner.run(["cp", "-a", src, src_v1], timed=False)
        result["stored_bytes"] = stored
        result["pinned"] = args.pin
        tls_pin = None
        if args.tls:
            crt, key_pem = os.path.join(work, "tls.crt"), os.path.join(work, "tls.key")
            runner.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout", key_pem,
                        "-out", crt, "-subj", "/CN=bench", "-addext",
                        "subjectAltName=IP:127.0.0.1"], timed=False)
            os.chmod(key_pem, 0o600)
            out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint",
                                  "-sha256"], capture_output=True, text=True, check=True).stdout
            tls_pin = out.strip().split("=", 1)[1]
        macro.log(f"source store: v1 {stored['v1']} B, v2 adds {stored['v2']} B")

        for r in range(args.runs):
            macro.log(f"run {r + 1}/{args.runs} (load average {macro.loadavg()})")
            rd = os.path.join(work, f"run{r}")
            os.makedirs(rd)
            dst = os.path.join(rd, "dst")
            runner.run([cf, "store", "init", "--store", dst, "--quiet"], timed=False)
            rs_root = os.path.join(rd, "rsync")
            os.makedirs(rs_root)
            rsd = RsyncDaemon(rs_root, rd)
            steps = {}
            daemon = None
            daemon_tls = None
            try:
                daemon = macro.Served(daemon_cpu + [cf, "serve", "--store", dst, "--io", args.io],
                                      rd, "serve")
                if args.tls:
                    dst_tls = os.path.join(rd, "dst-tls")
                    runner.run([cf, "store", "init", "--store", dst_tls, "--quiet"], timed=False)
                    daemon_tls = macro.Served(daemon_cpu + [
                        cf, "serve", "--store", dst_tls, "--io", args.io, "--tls-cert", crt,
                        "--tls-key", key_pem], rd, "serve-tls")

                def cf_sync(v, tls=False):
                    served = daemon_tls if tls else daemon
                    key = os.path.join(dst_tls if tls else dst, "auth.key")
                    extra = ["--tls-peer-sha256", tls_pin] if tls else []

                    def run():
                        # The daemon's CPU during the sync, next to the client's (wait4): on one
                        # machine the two share the cores, so their sum bounds the wall time.
                        before = macro.proc_cpu_seconds(served.pid)
                        res = macro.run_json(runner, client_cpu + [
                            cf, "sync", "--from", src_v1 if v == "v1" else src, "--to",
                            "tcp://" + served.addr, "--group", group[v], "--key-file", key,
                            "--connections", args.connections] + extra + common)
                        res["daemon_cpu_s"] = macro.proc_cpu_seconds(served.pid) - before
                        return res
                    return run

                cp_dst = os.path.join(rd, "cp-dst")
                tls_full = [("full_cf_tls", cf_sync("v1", True))] if args.tls else []
                tls_inc = [("inc_cf_tls", cf_sync("v2", True))] if args.tls else []
                steps.update(macro.alternate(r, tls_full + [
                    ("full_cf", cf_sync("v1")),
                    ("full_cp", lambda: runner.run(
                        f"cp -r {shlex.quote(src_v1)} {shlex.quote(cp_dst)} && "
                        f"find {shlex.quote(cp_dst)} -exec sync -- {{}} +", shell=True)),
                    ("full_rsync_store", lambda: runner.run(
                        ["rsync", "-a", "--fsync", src_v1 + "/", rsd.url("store/")])),
                    ("full_rsync_images", lambda: runner.run(
                        ["rsync", "-a", "-I", "--fsync", "--sparse", os.path.join(images, "v1") + "/",
                         rsd.url("images/")]))]))
                steps.update(macro.alternate(r, tls_inc + [
                    ("inc_cf", cf_sync("v2")),
                    ("inc_rsync_store", lambda: runner.run(
                        ["rsync", "-a", "--fsync", src + "/", rsd.url("store/")])),
                    ("inc_rsync_images", lambda: runner.run(
                        ["rsync", "-a", "-I", "--fsync", "--inplace",
                         os.path.join(images, "v2") + "/", rsd.url("images/")]))]))
                steps["daemon_hwm_kib"] = daemon.stop()
                if daemon_tls is not None:
                    steps["daemon_tls_hwm_kib"] = daemon_tls.stop()
            finally:
                if daemon is not None:
                    daemon.stop()
                if daemon_tls is not None:
                    daemon_tls.stop()
                rsd.stop()
            result["runs"].append(steps)
            if args.tls:
                macro.log(f"  TLS: full {steps['full_cf_tls']['seconds']:.2f} s, inc "
                          f"{steps['inc_cf_tls']['seconds']:.2f} s")
            j1, j2 = steps["full_cf"]["json"], steps["inc_cf"]["json"]
            fc = steps["full_cf"]
            macro.log(f"  full: cf {fc['seconds']:.2f} s (CPU client "
                      f"{fc['user_s'] + fc['sys_s']:.2f} s, daemon {fc['daemon_cpu_s']:.2f} s), cp "
                      f"{steps['full_cp']['seconds']:.2f}, rsync store "
                      f"{steps['full_rsync_store']['seconds']:.2f}, rsync images "
                      f"{steps['full_rsync_images']['seconds']:.2f}; inc: cf "
                      f"{steps['inc_cf']['seconds']:.2f} s, rsync store "
                      f"{steps['inc_rsync_store']['seconds']:.2f}, rsync images "
                      f"{steps['inc_rsync_images']['seconds']:.2f}; wire v2 "
                      f"{j2.get('wireBytes')} B vs {stored['v2']} B")
            del j1
            if not args.keep:
                macro.discard_later(rd, work)

        def med(key):
            return statistics.median(r[key]["seconds"] for r in result["runs"])

        s = {k: med(k) for k in ("full_cf", "full_cp", "full_rsync_store", "full_rsync_images",
                                 "inc_cf", "inc_rsync_store", "inc_rsync_images")}
        wire = statistics.median(r["inc_cf"]["json"].get("wireBytes", 0) for r in result["runs"])
        rss_client = max(max(r["full_cf"]["maxrss_kib"], r["inc_cf"]["maxrss_kib"])
                         for r in result["runs"])
        rss_daemon = max(r["daemon_hwm_kib"] for r in result["runs"])
        cpu_client = statistics.median(r["full_cf"]["user_s"] + r["full_cf"]["sys_s"]
                                       for r in result["runs"])
        cpu_daemon = statistics.median(r["full_cf"]["daemon_cpu_s"] for r in result["runs"])
        summary = {
            "medians_s": s,
            "full_vs_cp": s["full_cp"] / s["full_cf"],
            "full_vs_rsync_store": s["full_rsync_store"] / s["full_cf"],
            "full_vs_rsync_images": s["full_rsync_images"] / s["full_cf"],
            "inc_vs_rsync_store": s["inc_rsync_store"] / s["inc_cf"],
            "inc_vs_rsync_images": s["inc_rsync_images"] / s["inc_cf"],
            "inc_wire_bytes": wire, "inc_new_stored_bytes": stored["v2"],
            "inc_wire_vs_stored": wire / stored["v2"] if stored["v2"] else None,
            "peak_rss_client_mib": rss_client / 1024, "peak_rss_daemon_mib": rss_daemon / 1024,
            "full_cpu_client_s": cpu_client, "full_cpu_daemon_s": cpu_daemon,
            "logical_bytes_v1": logical,
        }
        if args.tls:
            for k in ("full_cf_tls", "inc_cf_tls"):
                s[k] = med(k)

            def cpu(key, side):
                if side == "client":
                    return statistics.median(r[key]["user_s"] + r[key]["sys_s"]
                                             for r in result["runs"])
                return statistics.median(r[key]["daemon_cpu_s"] for r in result["runs"])
            summary.update({
                "tls_full_vs_plain": s["full_cf"] / s["full_cf_tls"],
                "tls_inc_vs_plain": s["inc_cf"] / s["inc_cf_tls"],
                "tls_full_cpu_client_s": cpu("full_cf_tls", "client"),
                "tls_full_cpu_daemon_s": cpu("full_cf_tls", "daemon"),
                "tls_inc_cpu_client_s": cpu("inc_cf_tls", "client"),
                "tls_inc_cpu_daemon_s": cpu("inc_cf_tls", "daemon"),
                "inc_cpu_client_s": cpu("inc_cf", "client"),
                "inc_cpu_daemon_s": cpu("inc_cf", "daemon"),
            })
        result["summary"] = summary
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"sync over loopback, {runner.cache_mode}, {args.runs} run(s), "
              f"group v1 {logical / MIB:.0f} MiB logical, load {macro.loadavg()}")
        rows = [("full sync vs cp -r + fsync", summary["full_vs_cp"], ">= 0.8"),
                ("full sync vs rsync (store dir)", summary["full_vs_rsync_store"], ">= 5"),
                ("full sync vs rsync (raw images)", summary["full_vs_rsync_images"], ">= 5"),
                ("incremental vs rsync (store dir)", summary["inc_vs_rsync_store"], ">= 5"),
                ("incremental vs rsync (raw images)", summary["inc_vs_rsync_images"], ">= 5")]
        if args.tls:
            rows += [("TLS full sync vs plain TCP (throughput)", summary["tls_full_vs_plain"],
                      ">= 0.7"),
                     ("TLS incremental vs plain TCP", summary["tls_inc_vs_plain"], ">= 0.9")]
        for name, ratio, target in rows:
            print(f"  {name:36s} {ratio:6.2f}x   (target {target})")
        print(f"  medians (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))
        print(f"  incremental wire bytes {wire:.0f} vs new stored {stored['v2']} "
              f"= {summary['inc_wire_vs_stored']:.3f}x (target <= 1.05)")
        cores = os.cpu_count() or 1
        print(f"  full sync CPU (medians): client {cpu_client:.2f} s + daemon {cpu_daemon:.2f} s "
              f"= {cpu_client + cpu_daemon:.2f} CPU-s; on {cores} shared cores no less than "
              f"{(cpu_client + cpu_daemon) / cores:.2f} s of wall")
        if args.tls:
            print(f"  TLS CPU (medians): full client {summary['tls_full_cpu_client_s']:.2f} s + "
                  f"daemon {summary['tls_full_cpu_daemon_s']:.2f} s (plain {cpu_client:.2f} + "
                  f"{cpu_daemon:.2f}); incremental client {summary['tls_inc_cpu_client_s']:.2f} + "
                  f"daemon {summary['tls_inc_cpu_daemon_s']:.2f} (plain "
                  f"{summary['inc_cpu_client_s']:.2f} + {summary['inc_cpu_daemon_s']:.2f})")
        print(f"  peak RSS: client {summary['peak_rss_client_mib']:.0f} MiB, daemon "
              f"{summary['peak_rss_daemon_mib']:.0f} MiB (target < 256)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
