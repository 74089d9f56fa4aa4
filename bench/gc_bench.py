#!/usr/bin/env python3
"""Garbage collection of a store after a delete, against `chunkferry verify` of the same store.

    python3 bench/gc_bench.py --build build --root-size 2G --data-size 1G --runs 3
    python3 bench/gc_bench.py --build build --quick        # smoke test: 256M + 128M, 1 run

What it does (docs/BENCHMARKS.md, "Garbage collection"):
  * generates a two-version VM group once with bench/vmgen/make_vm_group;
  * per run: imports v1 (group G1) then v2 (group G2) into one store, and v2 alone into a fresh
    store (the size to reach); deletes G1; then, on a copy of that store per threshold, times
    `chunkferry verify` (the yardstick: it reads every pack) and `chunkferry gc --repack-below T`
    (each after dropping the page cache), and measures the packs left against the fresh store's;
    checks that the collected store verifies;
  * prints, per threshold, the median gc time, gc / verify, the store size / fresh size, and the
    bytes gc copied; the targets are gc <= verify and size <= 1.1x fresh;
  * the same for a second scenario, "unrelated": v1 of another VM (generated with another seed)
    instead of the first VM's v2, so that deleting G1 leaves about half of every pack dead and
    the threshold decides what is rewritten (what the default was chosen from).
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import macro  # noqa: E402  (same directory)

THRESHOLDS = ["0", "0.25", "0.5", "0.75", "0.9"]
G1 = macro.uuid_of("gc-bench-g1")
G2 = macro.uuid_of("gc-bench-g2")


def pack_bytes(store):
    packs = os.path.join(store, "packs")
    return sum(os.path.getsize(os.path.join(packs, p)) for p in os.listdir(packs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    macro.add_common_args(ap, "gc")
    args = macro.parse_common_args(ap)
    build = os.path.abspath(args.build)
    cf = os.path.join(build, "tools", "chunkferry")
    gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
    for tool in (cf, gen):
        if not os.access(tool, os.X_OK):
            sys.exit(f"gc_bench.py: {tool} not found: build the project first")
    work = macro.make_work_dir(args.work, "gc", "gc_bench.py")
    runner = macro.Runner(want_cold=not args.warm)
    common = ["--json", "--quiet", "--io", args.io]
    result = {"command": shlex.join(["python3"] + sys.argv), "cache": runner.cache_mode,
              "source_revision": macro.git_describe(os.path.dirname(os.path.dirname(
                  os.path.abspath(__file__)))),
              "config": {"root_size": args.root_size, "data_size": args.data_size,
                         "runs": args.runs, "seed": args.seed}, "runs": []}
    macro.log(f"work dir {work}; {runner.cache_mode}")
    macro.stop_on_signals()
    try:
        images = os.path.join(work, "images")
        runner.run([gen, "--out", images, "--root-size", args.root_size, "--data-size",
                    args.data_size, "--versions", "2", "--seed", str(args.seed)], timed=False)
        other = os.path.join(work, "other")
        runner.run([gen, "--out", other, "--root-size", args.root_size, "--data-size",
                    args.data_size, "--versions", "1", "--seed", str(args.seed + 1000)],
                   timed=False)
        vols = [("root.img", "Root"), ("data1.img", "Data")]
        # What G2 is in each scenario: the first VM's v2, or another VM's v1.
        second = {"versions": os.path.join(images, "v2"), "unrelated": os.path.join(other, "v1")}

        def import_version(store, folder, group):
            for i, (name, kind) in enumerate(vols):
                runner.run([cf, "import", "--store", store, "--image",
                            os.path.join(folder, name), "--group", group, "--volume",
                            macro.uuid_of(f"vol-{i}"), "--type", kind, "--vm", macro.VM_UUID]
                           + common, timed=False)

        for run, scenario in [(r, sc) for r in range(args.runs) for sc in second]:
            base = os.path.join(work, f"run{run}-{scenario}")
            os.makedirs(base)
            both, fresh = os.path.join(base, "both"), os.path.join(base, "fresh")
            for s in (both, fresh):
                runner.run([cf, "store", "init", "--store", s, "--quiet"], timed=False)
            import_version(both, os.path.join(images, "v1"), G1)
            import_version(both, second[scenario], G2)
            import_version(fresh, second[scenario], G2)
            before = pack_bytes(both)
            runner.run([cf, "delete", "--store", both, "--group", G1] + common, timed=False)
            entry = {"scenario": scenario, "bytes_both": before, "bytes_fresh": pack_bytes(fresh),
                     "thresholds": {}}
            for t in THRESHOLDS:
                store = os.path.join(base, f"t{t}")
                runner.run(["cp", "-a", both, store], timed=False)
                verify = macro.run_json(runner, [cf, "verify", "--store", store] + common)
                gc = macro.run_json(runner, [cf, "gc", "--store", store, "--repack-below", t]
                                    + common)
                after = macro.run_json(runner, [cf, "verify", "--store", store] + common)
                if not after["json"].get("ok"):
                    raise RuntimeError(f"store collected with --repack-below {t} does not verify")
                entry["thresholds"][t] = {
                    "verify_s": verify["seconds"], "gc_s": gc["seconds"],
                    "gc_maxrss_kib": gc["maxrss_kib"], "gc": gc["json"],
                    "bytes_after": pack_bytes(store)}
                shutil.rmtree(store)
                macro.log(f"run {run} {scenario} t={t}: gc {gc['seconds']:.2f} s, verify "
                          f"{verify['seconds']:.2f} s, {pack_bytes(fresh)} fresh vs "
                          f"{entry['thresholds'][t]['bytes_after']} after")
            result["runs"].append(entry)
            shutil.rmtree(base)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)

    for scenario in second:
        runs = [r for r in result["runs"] if r["scenario"] == scenario]
        what = "the first VM's v2" if scenario == "versions" else "another VM's v1"
        print(f"\n{scenario}: gc after deleting v1 of a VM from a store that also holds {what} "
              f"({args.root_size} root + {args.data_size} data, {len(runs)} runs, "
              f"{runner.cache_mode}); medians")
        print(f"{'--repack-below':>15} {'gc s':>7} {'verify s':>9} {'gc/verify':>10} "
              f"{'size/fresh':>11} {'copied MiB':>11} {'RSS MiB':>8}  targets: gc/verify <= 1, "
              "size/fresh <= 1.1")
        for t in THRESHOLDS:
            rows = [r["thresholds"][t] for r in runs]
            gc_s = statistics.median(r["gc_s"] for r in rows)
            ver_s = statistics.median(r["verify_s"] for r in rows)
            size = statistics.median(r["bytes_after"] / run["bytes_fresh"]
                                     for r, run in zip(rows, runs))
            copied = statistics.median(r["gc"]["bytes_copied"] for r in rows) / macro.MIB
            rss = max(r["gc_maxrss_kib"] for r in rows) / 1024
            print(f"{t:>15} {gc_s:7.2f} {ver_s:9.2f} {gc_s / ver_s:10.2f} {size:11.3f} "
                  f"{copied:11.1f} {rss:8.0f}")
        print(f"(before gc: {statistics.median(r['bytes_both'] for r in runs) / macro.MIB:.0f}"
              f" MiB; fresh store of G2 alone: "
              f"{statistics.median(r['bytes_fresh'] for r in runs) / macro.MIB:.0f} MiB)")


if __name__ == "__main__":
    main()
