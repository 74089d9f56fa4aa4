#!/usr/bin/env python3
"""Does opening a store cost the same at any size? `chunkferry ls` on an empty store and on stores
whose chunk index holds 1 M and 10 M chunks: wall time and peak RSS of the whole process.

    python3 bench/index_scale.py --build build --runs 5

The index of the bigger stores is synthetic (bench/index_bench writes N random ids into the
store's index/, as imports would, with no packs behind them): `ls` opens the store and its index
exactly as for a real one, and never reads the packs. Prints a table and a JSON line.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time


def run_measured(argv):
    """Runs argv; returns (seconds, peak RSS in MiB) of that process alone."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"{argv[0]} failed with status {status}")
    return seconds, usage.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--dir", default="/var/tmp/cf-index-scale")
    ap.add_argument("--sizes", default="0,1000000,10000000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cli = os.path.join(args.build, "tools", "chunkferry")
    bench = os.path.join(args.build, "bench", "index_bench")
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        store = os.path.join(args.dir, f"store-{size}")
        shutil.rmtree(store, ignore_errors=True)
        os.makedirs(args.dir, exist_ok=True)
        subprocess.run([cli, "store", "init", "--store", store], check=True,
                       stdout=subprocess.DEVNULL)
        if size > 0:
            subprocess.run([bench, "--dir", os.path.join(store, "index"), "--entries", str(size),
                            "--lookups", "0"], check=True, stdout=subprocess.DEVNULL)
        run_measured([cli, "ls", "--store", store])  # warm the page cache once
        walls, rss = [], []
        for _ in range(args.runs):
            w, r = run_measured([cli, "ls", "--store", store])
            walls.append(w)
            rss.append(r)
        index_mib = sum(os.path.getsize(os.path.join(store, "index", f))
                        for f in os.listdir(os.path.join(store, "index"))) / 2**20
        results.append({"chunks": size, "ls_ms_median": round(statistics.median(walls) * 1e3, 2),
                        "ls_peak_rss_mib_max": round(max(rss), 1), "index_mib": round(index_mib, 1)})
        shutil.rmtree(store)
    print(f"{'chunks':>10} {'index MiB':>10} {'ls ms (median)':>15} {'ls peak RSS MiB':>16}")
    for r in results:
        print(f"{r['chunks']:>10} {r['index_mib']:>10} {r['ls_ms_median']:>15} "
              f"{r['ls_peak_rss_mib_max']:>16}")
    print(json.dumps({"runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
