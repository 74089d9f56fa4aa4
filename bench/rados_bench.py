#!/usr/bin/env python3
"""chunkferry into and out of a Ceph RADOS pool, against librados's own `rados bench`, in one run.

    python3 bench/rados_bench.py --build build --root-size 2G --data-size 1G --runs 3
    python3 bench/rados_bench.py --build build --quick        # smoke test: 256M + 128M, 1 run

Starts a one-node cluster (tools/ceph_cluster.sh: one monitor, one BlueStore OSD on a sparse
file in the work dir) and, per run, in a namespace of its own:
  yardstick   rados bench write then seq, 16 MiB objects 4 in flight (chunkferry's packs) and
              4 MiB objects 16 in flight (the issue's figure), 5 s each, removed after
  full        chunkferry sync of group v1 from a local store into an empty pool store
  full_checksum  the same with --verify checksum (records' checksums only, no decompression)
  incremental the pool store holds v1: chunkferry sync of group v2
  pull        chunkferry sync of group v2 from the pool store into an empty local store
  import      chunkferry import of group v1's images straight into an empty pool store
  restore     chunkferry restore of v1's volumes from that pool store (and, to compare, from
              the local source store)
Throughput counts stored bytes (the compressed records that travel, are written or are read), as
the yardstick counts the bytes it writes. Reported per step: wall, CPU (user+sys) and peak RSS of
the chunkferry process, the OSD's CPU during the step, and the OSD's and monitor's peak RSS at the
end. The client and the OSD share the machine's cores, so a step cannot take less than (client +
OSD CPU-s) / cores: `floor_mb_s`, the throughput at which both cores would be busy all the time,
says whether the 0.8x-of-yardstick target is reachable here at all.

Python 3.11 standard library only; shares macro.py's runner.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import macro  # noqa: E402  (same directory)

MB = 1_000_000
PHASES = ("full", "full_checksum", "incremental", "pull", "import", "restore", "restore_local")


class OsdCpu:
    """The OSD's CPU seconds spent between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid
        self.at = 0.0

    def start(self):
        self.at = macro.proc_cpu_seconds(self.pid)

    def stop(self):
        return macro.proc_cpu_seconds(self.pid) - self.at


def rados_bench(runner, conf, ns, mode, size, threads, seconds=5):
    argv = ["rados", "-c", conf, "-p", "chunkferry", "-N", ns, "bench", str(seconds), mode,
            "-t", str(threads)]
    if mode == "write":
        argv += ["-b", str(size), "--no-cleanup"]
    out = runner.run(argv)["stdout"]
    m = re.search(r"Bandwidth \(MB/sec\):\s+([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"rados bench printed no bandwidth:\n{out}")
    return float(m.group(1)) * (1 << 20) / MB  # rados bench's "MB" are MiB


def new_step():
    """A step made of several processes (one per volume): their summed figures."""
    return {"seconds": 0.0, "user_s": 0.0, "sys_s": 0.0, "maxrss_kib": 0, "stored_bytes": 0,
            "image_bytes": 0, "osd_cpu_s": 0.0}


def add_to_step(step, r):
    """Adds one import's or restore's run_json result r to step (peak RSS: the largest)."""
    for k in ("seconds", "user_s", "sys_s", "osd_cpu_s"):
        step[k] += r[k]
    step["maxrss_kib"] = max(step["maxrss_kib"], r["maxrss_kib"])
    step["stored_bytes"] += r["json"]["storedBytes"]
    step["image_bytes"] += r["json"]["size"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    macro.add_common_args(ap, "rados")
    args = macro.parse_common_args(ap)
    for tool in ("rados", "ceph-osd", "ceph-mon"):
        if shutil.which(tool) is None:
            sys.exit(f"rados_bench.py: {tool} is missing (tools/install-deps.sh)")
    macro.stop_on_signals()
    build = os.path.abspath(args.build)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cf = os.path.join(build, "tools", "chunkferry")
    gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
    work = macro.make_work_dir(args.work, "rados", "rados_bench.py")
    runner = macro.Runner(want_cold=not args.warm)
    cluster = os.path.join(work, "ceph")
    script = os.path.join(root, "tools", "ceph_cluster.sh")
    result = macro.result_header(runner)
    try:
        # A 40 GiB sparse OSD (the yardstick writes ~4 GB a step before it is removed), and a
        # BlueStore cache that holds the index's omap (docs/BENCHMARKS.md: 64 MiB makes every
        # lookup a disk read).
        env = dict(os.environ, CHUNKFERRY_CEPH_BLOCK_GB="40", CHUNKFERRY_CEPH_CACHE_MB="1024")
        conf = subprocess.run([script, "start", cluster], check=True, capture_output=True,
                              text=True, env=env).stdout.strip()
        ceph = ["--ceph-conf", conf]
        osd_pid = subprocess.run(["pgrep", "-f", f"ceph-osd .*{cluster}"], capture_output=True,
                                 text=True).stdout.split()
        if not osd_pid:
            sys.exit("rados_bench.py: the cluster's OSD is not running")
        osd = OsdCpu(int(osd_pid[0]))

        def with_osd_cpu(run):
            """run() → its result, with the OSD's CPU seconds meanwhile as osd_cpu_s."""
            osd.start()
            r = run()
            r["osd_cpu_s"] = osd.stop()
            return r
        common = ["--json", "--quiet", "--io", args.io]
        images = os.path.join(work, "images")
        runner.run([gen, "--out", images, "--root-size", args.root_size, "--data-size",
                    args.data_size, "--versions", "2", "--seed", str(args.seed)], timed=False)
        vols = [("root.img", "Root"), ("data1.img", "Data")]
        group = {v: macro.uuid_of(f"rados-group-{v}") for v in ("v1", "v2")}
        src = os.path.join(work, "src")
        runner.run([cf, "store", "init", "--store", src, "--quiet"], timed=False)

        def import_group(store, v, extra=()):
            """Imports version v's volumes into store: one step of their summed figures."""
            step = new_step()
            step["uuids"] = []
            for f, vtype in vols:
                r = with_osd_cpu(lambda: macro.run_json(
                    runner, [cf, "import", "--store", store, "--image", os.path.join(images, v, f),
                             "--group", group[v], "--vm", macro.VM_UUID, "--volume",
                             macro.uuid_of(f"vol-{f}"), "--type", vtype] + list(extra) + common))
                add_to_step(step, r)
                step["uuids"].append(r["json"]["uuid"])
            step["mb_s"] = step["stored_bytes"] / step["seconds"] / MB
            return step

        def restore_group(store, uuids):
            """Restores the volumes uuids from store: one step of their summed figures."""
            step = new_step()
            out = os.path.join(work, "restored.img")
            for uuid in uuids:
                r = with_osd_cpu(lambda: macro.run_json(
                    runner, [cf, "restore", "--store", store, "--backup", uuid, "--output", out,
                             "--force"] + ceph + common))
                os.remove(out)
                add_to_step(step, r)
            step["mb_s"] = step["stored_bytes"] / step["seconds"] / MB
            return step

        local_imports = {v: import_group(src, v) for v in ("v1", "v2")}
        stored = {v: local_imports[v]["stored_bytes"] for v in ("v1", "v2")}
        result["stored_bytes"] = stored
        # The same import into a directory, as a measure of the client's own work.
        result["local_import_v1"] = local_imports["v1"]
        macro.log(f"source store: v1 {stored['v1']} B, v2 adds {stored['v2']} B; local import of "
                  f"v1 {local_imports['v1']['seconds']:.2f} s")

        for r in range(args.runs):
            macro.log(f"run {r + 1}/{args.runs} (load average {macro.loadavg()})")
            steps = {}
            yard_ns = f"yard{r}"
            for name, size, threads in (("16m_t4", 16 << 20, 4), ("4m_t16", 4 << 20, 16)):
                for key, mode in ((f"yard_write_{name}", "write"), (f"yard_read_{name}", "seq")):
                    osd.start()
                    steps[key] = rados_bench(runner, conf, yard_ns, mode, size, threads)
                    steps[f"{key}_osd_cpu_s"] = osd.stop()
                subprocess.run(["rados", "-c", conf, "-p", "chunkferry", "-N", yard_ns,
                                "cleanup"], check=True, capture_output=True)
            pool = f"rados:chunkferry/run{r}"
            runner.run([cf, "store", "init", "--store", pool, "--quiet"] + ceph, timed=False)
            local = os.path.join(work, f"pulled{r}")
            runner.run([cf, "store", "init", "--store", local, "--quiet"], timed=False)

            def sync(frm, to, v, extra=()):
                res = with_osd_cpu(lambda: macro.run_json(
                    runner, [cf, "sync", "--from", frm, "--to", to, "--group", group[v]] +
                    list(extra) + ceph + common))
                res["mb_s"] = res["json"]["bytesSent"] / res["seconds"] / MB
                return res
            checksum_pool = f"rados:chunkferry/checksum{r}"
            runner.run([cf, "store", "init", "--store", checksum_pool, "--quiet"] + ceph,
                       timed=False)
            steps["full_checksum"] = sync(src, checksum_pool, "v1", ["--verify", "checksum"])
            steps["full"] = sync(src, pool, "v1")
            steps["incremental"] = sync(src, pool, "v2")
            steps["pull"] = sync(pool, local, "v2")
            shutil.rmtree(local)
            # Straight from images into a pool of its own, and the root volume back out of it.
            imported = f"rados:chunkferry/import{r}"
            runner.run([cf, "store", "init", "--store", imported, "--quiet"] + ceph, timed=False)
            steps["import"] = import_group(imported, "v1", ceph)
            steps["restore"] = restore_group(imported, steps["import"]["uuids"])
            # The same volumes from the local source store: the client's own restore speed.
            steps["restore_local"] = restore_group(src, local_imports["v1"]["uuids"])
            result["runs"].append(steps)
            for k in PHASES:
                s = steps[k]
                moved = s["json"]["bytesSent"] if "json" in s else s["stored_bytes"]
                macro.log(f"  {k}: {moved} B in {s['seconds']:.2f} s = "
                          f"{s['mb_s']:.0f} MB/s, cpu {s['user_s'] + s['sys_s']:.2f} s, "
                          f"osd cpu {s['osd_cpu_s']:.2f} s, rss {s['maxrss_kib'] // 1024} MiB")
            macro.log("  yardstick: " + ", ".join(
                f"{k} osd cpu {v:.2f} s" if k.endswith("_osd_cpu_s") else f"{k} {v:.0f} MB/s"
                for k, v in steps.items() if k.startswith("yard")))
        for name in ("ceph-osd", "ceph-mon"):
            pid = subprocess.run(["pgrep", "-f", f"{name} .*{cluster}"], capture_output=True,
                                 text=True).stdout.split()
            if pid:
                result[f"{name}_peak_rss_kib"] = macro.proc_status_kib(int(pid[0]), "VmHWM")

        def med(key, sub=None):
            vals = [run[key][sub] if sub else run[key] for run in result["runs"]]
            return statistics.median(vals)
        summary = {k: med(k) for k in result["runs"][0] if k.startswith("yard")}
        for k in PHASES:
            summary[f"{k}_mb_s"] = med(k, "mb_s")
            summary[f"{k}_seconds"] = med(k, "seconds")
            summary[f"{k}_rss_mib"] = max(run[k]["maxrss_kib"] for run in result["runs"]) / 1024
            summary[f"{k}_cpu_s"] = statistics.median(
                run[k]["user_s"] + run[k]["sys_s"] for run in result["runs"])
            summary[f"{k}_osd_cpu_s"] = med(k, "osd_cpu_s")
            # Both cores busy the whole step: the most this machine could do for its CPU-s.
            moved = [run[k]["json"]["bytesSent"] if "json" in run[k] else run[k]["stored_bytes"]
                     for run in result["runs"]]
            cpu = [run[k]["user_s"] + run[k]["sys_s"] + run[k]["osd_cpu_s"]
                   for run in result["runs"]]
            summary[f"{k}_floor_mb_s"] = statistics.median(
                b / (c / os.cpu_count()) / MB for b, c in zip(moved, cpu) if c > 0)
        summary["full_vs_yard_write_16m"] = summary["full_mb_s"] / summary["yard_write_16m_t4"]
        summary["full_checksum_vs_yard_write_16m"] = (summary["full_checksum_mb_s"] /
                                                      summary["yard_write_16m_t4"])
        summary["pull_vs_yard_read_16m"] = summary["pull_mb_s"] / summary["yard_read_16m_t4"]
        summary["import_vs_yard_write_16m"] = summary["import_mb_s"] / summary["yard_write_16m_t4"]
        summary["restore_vs_yard_read_16m"] = (summary["restore_mb_s"] /
                                               summary["yard_read_16m_t4"])
        result["summary"] = summary
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(summary, indent=2))
    finally:
        subprocess.run([script, "stop", cluster], capture_output=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
