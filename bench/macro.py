#!/usr/bin/env python3
"""Whole-process benchmark of chunkferry: import, copy and restore of a generated VM-like backup
group, each measured against a yardstick run on the same data in the same run.

    python3 bench/macro.py --build build-main --root-size 2G --data-size 1G --runs 3 \
        --work /var/tmp/cf-macro --out results.json
    python3 bench/macro.py --build build-main --quick          # smoke test: 256M + 128M, 1 run

What it does (see docs/BENCHMARKS.md for how to read the result):
  * generates the group once with bench/vmgen/make_vm_group: v1 and v2, each a Root volume and
    one Data volume (sparse raw images), and measures the dedupe ideal of each version with
    bench/vmgen/ideal_bytes (v1 alone; v2 against v1);
  * then, --runs times, alternating chunkferry and its yardstick (and which of them goes first):
      import v1   every volume into a fresh store      vs  zstd -1 -T0 -c IMG > /dev/null
      import v2   into the store that holds v1          vs  the same zstd over the v2 images
      copy v1     group v1 to an empty store (--verify full)  vs  cp -r of a store holding only
                  v1, then an fsync of every file and directory of the copy (`sync FILE...`),
                  because chunkferry copy makes everything durable too
      copy v2     group v2 to the store that holds v1  vs  cp -r of the source store (which
                  holds v1 and v2) + the same fsyncs, issue 2's yardstick; and, as information,
                  vs an append-only mirror of what the source store gained with v2 (new files
                  copied, pack tails appended with dd), then the same fsyncs
      restore v1  every v1 volume to a file             vs  zstd -dc IMG.zst > FILE, then fsync
                  (both include the final fsync: chunkferry restore fsyncs before its rename);
                  also, for information, zstd -d --sparse -o FILE (holes like chunkferry's)
  * times every process by wall clock (start to reap) and takes its peak RSS from os.wait4;
  * drops the page cache (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed process
    when permitted, otherwise says "warm cache";
  * prints one plain-text table (medians, MB/s of image, ratio = yardstick / chunkferry, target,
    pass/fail, peak RSS) and the dedupe table, and writes every run's data as JSON to --out.

Python 3.11 standard library only.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
MB = 1_000_000  # MB/s figures are decimal megabytes of image (apparent size) per second
RSS_LIMIT_KIB = 256 * 1024
VM_UUID = "5f1e0c3a9b2d4e6f8a7c1b0d2e3f4a5b"


def uuid_of(text):
    return hashlib.md5(text.encode()).hexdigest()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("MemTotal", "MemFree", "MemAvailable"):
                out[key] = int(value.split()[0]) // 1024  # MiB
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def du_bytes(path):
    """`du -sb PATH` in bytes (0 when the path does not exist)."""
    if not os.path.exists(path):
        return 0
    out = subprocess.run(["du", "-sb", path], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def git_describe(src):
    try:
        rev = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def add_common_args(ap, name):
    """Adds the options every benchmark script shares to the ArgumentParser ap. name ("macro",
    "sync", "api") names the default work dir (/var/tmp/cf-NAME.XXXXXX) and --out
    (NAME-results.json)."""
    ap.add_argument("--build", default="build", help="CMake build dir (default: build)")
    ap.add_argument("--root-size", default="2G", help="root volume size (default 2G)")
    ap.add_argument("--data-size", default="1G", help="data volume size (default 1G)")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    ap.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    ap.add_argument("--work", default=None,
                    help=f"work dir, must be new or empty (default: /var/tmp/cf-{name}.XXXXXX; "
                         "not /tmp, which may be tmpfs)")
    ap.add_argument("--out", default=f"{name}-results.json", help="JSON results file")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: root 256M, data 128M, 1 run")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--io", default="auto", help="chunkferry --io backend (default auto)")


def parse_common_args(ap):
    """ap.parse_args(), then --quick applied and --runs checked."""
    args = ap.parse_args()
    if args.quick:
        args.root_size, args.data_size, args.runs = "256M", "128M", 1
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def make_work_dir(work_arg, name, script):
    """The work dir: --work (work_arg) when given, which must be new or empty, else a new
    /var/tmp/cf-NAME.XXXXXX (not /tmp, which may be tmpfs). Exits naming script if not empty."""
    if work_arg:
        work = os.path.abspath(work_arg)
        if os.path.exists(work) and os.listdir(work):
            sys.exit(f"{script}: work dir {work} is not empty (it is removed at the end)")
        os.makedirs(work, exist_ok=True)
        return work
    return tempfile.mkdtemp(prefix=f"cf-{name}.", dir="/var/tmp")


def stop_on_signals():
    """SIGTERM and SIGHUP end a run the way Ctrl-C does, so its `finally` blocks stop the
    daemons it started and remove the work dir."""
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def result_header(runner, **extra):
    """The fields every harness's JSON starts with (command, date, revision, cache mode, load),
    then `extra`, then an empty "runs" list."""
    header = {"command": shlex.join(["python3"] + sys.argv),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "source_revision": git_describe(os.path.dirname(os.path.dirname(
                  os.path.abspath(__file__)))),
              "cache": runner.cache_mode, "loadavg_start": loadavg()}
    header.update(extra)
    header["runs"] = []
    return header


def discard_later(path, work):
    """Moves `path` into WORK/trash instead of deleting it now. The root file system here is ext4
    mounted with `discard`: deleting GBs makes the next fsync wait seconds for the discards, and
    the next fsync belongs to a timed step. The trash goes with the work dir at the end."""
    if not os.path.exists(path):
        return
    trash = os.path.join(work, "trash")
    os.makedirs(trash, exist_ok=True)
    os.rename(path, os.path.join(trash, f"{len(os.listdir(trash))}-{os.path.basename(path)}"))


def empty_trash(work, settle_s=5):
    """Deletes what discard_later put aside, then syncs and waits for the discards to pass:
    between runs, where nothing is timed (three full-size runs of bench/compare.py would not fit
    the disk with every run's trash kept)."""
    trash = os.path.join(work, "trash")
    if not os.path.isdir(trash):
        return
    shutil.rmtree(trash, ignore_errors=True)
    os.sync()
    time.sleep(settle_s)


def proc_status_kib(pid, field):
    """A `field:` line of /proc/PID/status in KiB (VmHWM, VmRSS); 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid):
    """User + system CPU seconds of a live process so far (/proc/PID/stat); 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Served:
    """A chunkferry process that listens on 127.0.0.1:0 and writes its address to a ready file
    (`serve` or `api`); its stderr goes to a log file (the API logs one line per poll)."""

    def __init__(self, argv, work, name):
        self.name = name
        self.ready = os.path.join(work, f"{name}.ready")
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv + ["--listen", "127.0.0.1:0", "--ready-file", self.ready],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.ready):
                with open(self.ready) as f:
                    self.addr = f.read().strip()
                if self.addr:
                    return
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"{name} exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{name} did not start within 30 s: {self.log_tail()}")

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, wait (kill after 60 s); returns the peak RSS (VmHWM, KiB) read just before.
        Safe to call twice."""
        hwm = terminate(self.proc)
        if not self.log.closed:
            self.log.close()
        return hwm


def terminate(proc):
    """SIGTERM to a Popen still running, wait (kill after 60 s); returns its peak RSS (VmHWM,
    KiB) read just before, 0 when it had ended."""
    hwm = 0
    if proc.poll() is None:
        hwm = proc_status_kib(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return hwm


class Runner:
    """Runs processes one at a time, timed, with their peak RSS, after dropping the page cache."""

    def __init__(self, want_cold):
        self.cold = False
        if want_cold:
            try:
                self._drop()
                self.cold = True
            except OSError as e:
                log(f"cannot drop the page cache ({e}): measuring with a warm cache")

    @property
    def cache_mode(self):
        return "cold cache (dropped before every timed process)" if self.cold else "warm cache"

    @staticmethod
    def _drop():
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

    def run(self, argv, *, shell=False, timed=True, env=None, cwd=None):
        """Runs argv (a list, or a shell command string when shell=True). Returns a dict with
        wall seconds, peak RSS in KiB (os.wait4's ru_maxrss), CPU seconds, the bytes it read from
        and wrote to storage (ru_inblock / ru_oublock, 512-byte units, its reaped children
        included), stdout; raises on failure."""
        if timed and self.cold:
            self._drop()
        if shell:
            argv = ["/bin/sh", "-c", argv]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 env=env, cwd=cwd)
            try:
                _, status, usage = os.wait4(p.pid, 0)
            except BaseException:  # interrupted: do not leave the child writing into the work dir
                p.kill()
                p.wait()
                raise
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        cmd = argv[2] if shell else shlex.join(argv)
        if p.returncode != 0:
            raise RuntimeError(f"command failed (exit {p.returncode}): {cmd}\n{stderr.strip()}")
        return {"cmd": cmd, "seconds": wall, "maxrss_kib": usage.ru_maxrss,
                "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                "read_bytes": usage.ru_inblock * 512, "written_bytes": usage.ru_oublock * 512,
                "stdout": stdout}


def run_json(runner, argv):
    r = runner.run(argv)
    r["json"] = json.loads(r.pop("stdout"))
    return r


def alternate(run_index, steps):
    """Runs the (name, thunk) steps, rotated by the run index so that each goes first in turn."""
    k = run_index % len(steps)
    results = {}
    for name, thunk in steps[k:] + steps[:k]:
        results[name] = thunk()
    return results


def fsync_cmd(paths):
    """Shell text that fsyncs each path (coreutils `sync FILE...` calls fsync on each)."""
    return "sync -- " + " ".join(shlex.quote(p) for p in paths)


def delta_mirror_cmd(old_src, new_src, dst):
    """Shell text that brings `dst` (a cp -r of `old_src`) up to `new_src` with plain tools, as
    an append-only mirror would: files that are new or changed are copied, except pack files
    that only grew, whose new tail is appended with dd; then every touched path is fsynced.
    Returns (command, bytes it moves)."""
    cmds, touched, moved = [], set(), 0
    for d, dirs, files in os.walk(new_src):
        rel_dir = os.path.relpath(d, new_src)
        for name in dirs:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not os.path.isdir(os.path.join(old_src, rel)):
                cmds.append(f"mkdir -p {shlex.quote(os.path.join(dst, rel))}")
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            new_path, old_path = os.path.join(new_src, rel), os.path.join(old_src, rel)
            st_new = os.stat(new_path)
            st_old = os.stat(old_path) if os.path.exists(old_path) else None
            if st_old and st_old.st_size == st_new.st_size and st_old.st_mtime_ns == st_new.st_mtime_ns:
                continue
            out_path = os.path.join(dst, rel)
            if st_old and rel.startswith("packs" + os.sep) and st_new.st_size > st_old.st_size:
                off = st_old.st_size
                cmds.append(f"dd if={shlex.quote(new_path)} of={shlex.quote(out_path)} bs=1M "
                            f"skip={off} seek={off} iflag=skip_bytes oflag=seek_bytes "
                            f"conv=notrunc status=none")
                moved += st_new.st_size - off
            else:
                cmds.append(f"cp {shlex.quote(new_path)} {shlex.quote(out_path)}")
                moved += st_new.st_size
            touched.add(out_path)
            touched.add(os.path.dirname(out_path))
    if touched:
        cmds.append(fsync_cmd(sorted(touched)))
    return " && ".join(cmds) if cmds else "true", moved


def summarize(name, runs, cf_key, yard_key, logical_bytes, target, extra=None):
    """Medians, ratio (yardstick / chunkferry) and pass/fail over the runs of one scenario."""
    cf = [r[cf_key]["seconds"] for r in runs]
    yd = [r[yard_key]["seconds"] for r in runs]
    cf_med, yd_med = statistics.median(cf), statistics.median(yd)
    ratio = yd_med / cf_med if cf_med > 0 else float("inf")
    per_run = [y / c for c, y in zip(cf, yd)]
    rss = max(r[cf_key]["maxrss_kib"] for r in runs)
    s = {"scenario": name, "chunkferry_s": cf, "yardstick_s": yd, "chunkferry_median_s": cf_med,
         "yardstick_median_s": yd_med, "ratio": ratio, "ratio_per_run": per_run,
         "logical_bytes": logical_bytes, "chunkferry_MBps": logical_bytes / cf_med / MB,
         "yardstick_MBps": logical_bytes / yd_med / MB, "target_ratio_min": target,
         "pass": None if target is None else ratio >= target, "peak_rss_kib": rss,
         "rss_pass": rss < RSS_LIMIT_KIB}
    if extra:
        s.update(extra)
    return s


def sum_steps(results, names, key):
    """Combines per-volume steps into one: seconds summed, RSS the maximum."""
    steps = [results[n] for n in names]
    return {"seconds": sum(s["seconds"] for s in steps),
            "maxrss_kib": max(s["maxrss_kib"] for s in steps), "parts": names, "key": key}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "macro")
    ap.add_argument("--threads", default="0", help="chunkferry --threads (default 0: cores - 1)")
    ap.add_argument("--note", default="", help="free text recorded with the results (e.g. the "
                                               "revision the build was made from)")
    args = parse_common_args(ap)

    command_line = shlex.join(["python3"] + sys.argv)
    started = datetime.datetime.now().astimezone()
    load_start = loadavg()
    build = os.path.abspath(args.build)
    cf = os.path.join(build, "tools", "chunkferry")
    gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
    ideal_tool = os.path.join(build, "bench", "vmgen", "ideal_bytes")
    for tool in (cf, gen, ideal_tool):
        if not os.access(tool, os.X_OK):
            sys.exit(f"macro.py: {tool} not found: build the project first (cmake --build {args.build})")
    for tool in ("zstd", "cp", "dd", "sync", "du"):
        if shutil.which(tool) is None:
            sys.exit(f"macro.py: {tool} is not installed")

    work = make_work_dir(args.work, "macro", "macro.py")

    runner = Runner(want_cold=not args.warm)
    common = ["--json", "--quiet", "--io", args.io, "--threads", str(args.threads)]
    machine = {"nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
               "memory_mib": meminfo(), "loadavg_start": load_start,
               "zstd": subprocess.run(["zstd", "--version"], capture_output=True,
                                      text=True).stdout.strip(),
               "python": platform.python_version(), "work_dir": work}
    src_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:  # the source tree the build was configured from
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    src_dir = line.split("=", 1)[1].strip()
    except OSError:
        pass
    result = {"command": command_line, "date": started.isoformat(timespec="seconds"),
              "source": src_dir, "source_revision": git_describe(src_dir), "note": args.note,
              "build": build, "machine": machine,
              "cache": runner.cache_mode,
              "config": {"root_size": args.root_size, "data_size": args.data_size,
                         "runs": args.runs, "seed": args.seed, "io": args.io,
                         "threads": args.threads},
              "runs": []}
    log(f"work dir {work}; {runner.cache_mode}; load average {load_start}")

    stop_on_signals()
    try:
        # ---- the group: generated once, compressed once (untimed), ideals measured once.
        images = os.path.join(work, "images")
        t0 = time.perf_counter()
        gen_out = runner.run([gen, "--out", images, "--root-size", args.root_size,
                              "--data-size", args.data_size, "--versions", "2",
                              "--seed", str(args.seed)], timed=False)
        result["generation"] = {"seconds": time.perf_counter() - t0, "cmd": gen_out["cmd"],
                                "output": gen_out["stdout"].strip().splitlines()}
        vols = [("root", "root.img", "Root"), ("data1", "data1.img", "Data")]
        img = {(v, n): os.path.join(images, v, f) for v in ("v1", "v2") for n, f, _ in vols}
        sizes = {k: os.stat(p).st_size for k, p in img.items()}
        logical = {v: sum(sizes[(v, n)] for n, _, _ in vols) for v in ("v1", "v2")}
        nonzero = {k: os.stat(p).st_blocks * 512 for k, p in img.items()}
        result["images"] = {f"{v}/{n}": {"size": sizes[(v, n)], "allocated": nonzero[(v, n)]}
                            for v, n in sizes}
        log(f"generated in {result['generation']['seconds']:.1f} s: " +
            ", ".join(f"{v}/{n} {sizes[(v, n)] // MIB} MiB ({nonzero[(v, n)] // MIB} MiB allocated)"
                      for v, n in sizes))

        zst_dir = os.path.join(work, "zst")
        os.makedirs(zst_dir)
        zst = {}
        for n, _, _ in vols:
            zst[n] = os.path.join(zst_dir, f"{n}.img.zst")
            runner.run(["zstd", "-1", "-T0", "-q", "-f", img[("v1", n)], "-o", zst[n]], timed=False)

        def ideal(old, new):
            argv = [ideal_tool] + (["--old", ",".join(old)] if old else []) + ["--new", ",".join(new)]
            return json.loads(runner.run(argv, timed=False)["stdout"])

        v1_imgs = [img[("v1", n)] for n, _, _ in vols]
        v2_imgs = [img[("v2", n)] for n, _, _ in vols]
        ideals = {"v1": ideal([], v1_imgs), "v2": ideal(v1_imgs, v2_imgs)}
        result["ideal"] = ideals
        log(f"ideal bytes: v1 {ideals['v1']['ideal_zstd1_bytes']}, v2 vs v1 "
            f"{ideals['v2']['ideal_zstd1_bytes']}")

        group = {v: uuid_of(f"macro-group-{v}") for v in ("v1", "v2")}
        backup = {(v, n): uuid_of(f"macro-{v}-{n}") for v in ("v1", "v2") for n, _, _ in vols}
        volume_uuid = {n: uuid_of(f"macro-volume-{n}") for n, _, _ in vols}

        def cf_import(store, v, n, vtype):
            return lambda: run_json(runner, [cf, "import", "--store", store, "--image", img[(v, n)],
                                             "--group", group[v], "--vm", VM_UUID,
                                             "--volume", volume_uuid[n], "--type", vtype,
                                             "--name", f"{v}-{n}", "--uuid", backup[(v, n)]] + common)

        def zstd_compress(v, n):
            return lambda: runner.run(
                f"zstd -1 -T0 -q -c {shlex.quote(img[(v, n)])} > /dev/null", shell=True)

        for r in range(args.runs):
            log(f"run {r + 1}/{args.runs} (load average {loadavg()})")
            rd = os.path.join(work, f"run{r}")
            os.makedirs(rd)
            src, src_v1, dst, cp_dst, cp2_dst = (os.path.join(rd, x) for x in (
                "src", "src-v1", "dst", "cp-dst", "cp2-dst"))
            run = {"run": r, "loadavg": loadavg(), "steps": {}}
            steps = run["steps"]
            runner.run([cf, "store", "init", "--store", src, "--quiet"], timed=False)

            # 1 and 2: import v1 into a fresh store, then v2 into the store that holds v1.
            for v in ("v1", "v2"):
                packs = os.path.join(src, "packs")
                before = {"packs": du_bytes(packs), "store": du_bytes(src)}
                for n, _, vtype in vols:
                    steps.update(alternate(r, [(f"import_{v}_{n}_cf", cf_import(src, v, n, vtype)),
                                               (f"import_{v}_{n}_zstd", zstd_compress(v, n))]))
                after = {"packs": du_bytes(packs), "store": du_bytes(src)}
                run[f"growth_{v}"] = {
                    "stored_bytes": sum(steps[f"import_{v}_{n}_cf"]["json"]["storedBytes"]
                                        for n, _, _ in vols),
                    "packs_du_before": before["packs"], "packs_du_after": after["packs"],
                    "packs_du_growth": after["packs"] - before["packs"],
                    "store_du_growth": after["store"] - before["store"]}
                if v == "v1":  # the v1-only source store for the copy yardstick
                    runner.run(["cp", "-a", src, src_v1], timed=False)
                log(f"  import {v}: chunkferry " +
                    ", ".join(f"{steps[f'import_{v}_{n}_cf']['seconds']:.2f}" for n, _, _ in vols) +
                    " s; zstd " +
                    ", ".join(f"{steps[f'import_{v}_{n}_zstd']['seconds']:.2f}" for n, _, _ in vols) +
                    f" s; store grew {run[f'growth_{v}']['stored_bytes']} B")

            # 3: copy group v1 to an empty store vs cp -r of the v1-only store (+ fsyncs), then
            # group v2 incrementally vs an append-only mirror of the source store's growth.
            runner.run([cf, "store", "init", "--store", dst, "--quiet"], timed=False)

            def cp_full(from_dir, to_dir):
                # The fsync list is known only after cp; keep both in one shell command.
                return runner.run(f"cp -r {shlex.quote(from_dir)} {shlex.quote(to_dir)} && "
                                  f"find {shlex.quote(to_dir)} -exec sync -- {{}} +", shell=True)

            steps.update(alternate(r, [
                ("copy_v1_cf", lambda: run_json(runner, [cf, "copy", "--from", src_v1, "--to", dst,
                                                         "--group", group["v1"]] + common)),
                ("copy_v1_cp", lambda: cp_full(src_v1, cp_dst))]))
            delta_cmd, delta_bytes = delta_mirror_cmd(src_v1, src, cp_dst)
            run["copy_v2_mirror_bytes"] = delta_bytes
            steps.update(alternate(r, [
                ("copy_v2_cf", lambda: run_json(runner, [cf, "copy", "--from", src, "--to", dst,
                                                         "--group", group["v2"]] + common)),
                ("copy_v2_mirror", lambda: runner.run(delta_cmd, shell=True)),
                # Issue 2's own yardstick: a plain cp -r of the source store (v1 and v2).
                ("copy_v2_cp", lambda: cp_full(src, cp2_dst))]))
            if r == 0:  # the yardstick copies are real copies: their packs equal the source's
                for name in os.listdir(os.path.join(src, "packs")):
                    runner.run(["cmp", os.path.join(src, "packs", name),
                                os.path.join(cp_dst, "packs", name)], timed=False)
            run["store_du"] = {"src_v1": du_bytes(src_v1), "src": du_bytes(src),
                               "dst": du_bytes(dst), "cp_dst": du_bytes(cp_dst)}
            log(f"  copy v1: chunkferry {steps['copy_v1_cf']['seconds']:.2f} s, cp -r "
                f"{steps['copy_v1_cp']['seconds']:.2f} s; copy v2: chunkferry "
                f"{steps['copy_v2_cf']['seconds']:.2f} s, mirror {steps['copy_v2_mirror']['seconds']:.2f} s")
            for p in (src_v1, dst, cp_dst, cp2_dst):
                discard_later(p, work)

            # 4: restore every v1 volume vs zstd -dc of its .zst (both end with an fsync).
            out_dir = os.path.join(rd, "out")
            os.makedirs(out_dir)
            for n, _, _ in vols:
                cf_out = os.path.join(out_dir, f"{n}.cf")
                zd_out = os.path.join(out_dir, f"{n}.zstd")
                zs_out = os.path.join(out_dir, f"{n}.sparse")
                res = alternate(r, [
                    (f"restore_v1_{n}_cf", lambda: run_json(runner, [
                        cf, "restore", "--store", src, "--backup", backup[("v1", n)],
                        "--output", cf_out] + common)),
                    (f"restore_v1_{n}_zstd", lambda: runner.run(
                        f"zstd -dc {shlex.quote(zst[n])} > {shlex.quote(zd_out)} && "
                        f"sync -- {shlex.quote(zd_out)}", shell=True)),
                    (f"restore_v1_{n}_zstd_sparse", lambda: runner.run(
                        f"zstd -d -q -f --sparse {shlex.quote(zst[n])} -o {shlex.quote(zs_out)} && "
                        f"sync -- {shlex.quote(zs_out)}", shell=True))])
                steps.update(res)
                if r == 0:  # correctness, untimed: the restored image is the original
                    runner.run(["cmp", cf_out, img[("v1", n)]], timed=False)
                    res[f"restore_v1_{n}_cf"]["checked_identical"] = True
                for p in (cf_out, zd_out, zs_out):
                    discard_later(p, work)
            log("  restore v1: chunkferry " +
                ", ".join(f"{steps[f'restore_v1_{n}_cf']['seconds']:.2f}" for n, _, _ in vols) +
                " s; zstd -dc " +
                ", ".join(f"{steps[f'restore_v1_{n}_zstd']['seconds']:.2f}" for n, _, _ in vols) + " s")
            discard_later(rd, work)
            result["runs"].append(run)

        # ---- summary
        runs = result["runs"]
        names = [n for n, _, _ in vols]
        for run in runs:
            s = run["steps"]
            for v in ("v1", "v2"):
                s[f"import_{v}_cf"] = sum_steps(s, [f"import_{v}_{n}_cf" for n in names], "cf")
                s[f"import_{v}_zstd"] = sum_steps(s, [f"import_{v}_{n}_zstd" for n in names], "y")
            for y in ("cf", "zstd", "zstd_sparse"):
                s[f"restore_v1_{y}"] = sum_steps(s, [f"restore_v1_{n}_{y}" for n in names], y)
        steps_of = [run["steps"] for run in runs]
        scen = []
        for v, label in (("v1", "import v1 (fresh store)"), ("v2", "import v2 (store holds v1)")):
            scen.append(summarize(label, steps_of, f"import_{v}_cf", f"import_{v}_zstd",
                                  logical[v], 1.0, {"yardstick": "zstd -1 -T0 -c IMG > /dev/null"}))
            for n in names:
                scen.append(summarize(f"  {v} {n}", steps_of, f"import_{v}_{n}_cf",
                                      f"import_{v}_{n}_zstd", sizes[(v, n)], 1.0,
                                      {"yardstick": "zstd -1 -T0 -c IMG > /dev/null"}))
        scen.append(summarize("copy v1 (empty dst, full verify)", steps_of, "copy_v1_cf",
                              "copy_v1_cp", logical["v1"], 0.8,
                              {"yardstick": "cp -r SRC DST && find DST -exec sync -- {} +"}))
        scen.append(summarize("copy v2 (dst holds v1)", steps_of, "copy_v2_cf", "copy_v2_cp",
                              logical["v2"], 0.8,
                              {"yardstick": "cp -r SRC DST && find DST -exec sync -- {} + "
                                            "(SRC holds v1 and v2)"}))
        scen.append(summarize("copy v2 vs delta mirror (info)", steps_of, "copy_v2_cf",
                              "copy_v2_mirror", logical["v2"], None,
                              {"yardstick": "append-only mirror of the source store's growth "
                                            "(cp new files, dd pack tails) + fsync"}))
        scen.append(summarize("restore v1 (all volumes)", steps_of, "restore_v1_cf",
                              "restore_v1_zstd", logical["v1"], 1.0,
                              {"yardstick": "zstd -dc IMG.zst > FILE && sync FILE"}))
        for n in names:
            scen.append(summarize(f"  v1 {n}", steps_of, f"restore_v1_{n}_cf",
                                  f"restore_v1_{n}_zstd", sizes[("v1", n)], 1.0,
                                  {"yardstick": "zstd -dc IMG.zst > FILE && sync FILE"}))
        scen.append(summarize("restore v1 vs sparse zstd (info)", steps_of, "restore_v1_cf",
                              "restore_v1_zstd_sparse", logical["v1"], None,
                              {"yardstick": "zstd -d --sparse IMG.zst -o FILE && sync FILE"}))
        dedupe = []
        for v in ("v1", "v2"):
            stored = statistics.median(run[f"growth_{v}"]["stored_bytes"] for run in runs)
            packs = statistics.median(run[f"growth_{v}"]["packs_du_growth"] for run in runs)
            whole = statistics.median(run[f"growth_{v}"]["store_du_growth"] for run in runs)
            ib = ideals[v]["ideal_zstd1_bytes"]
            dedupe.append({"version": v, "stored_bytes": stored, "packs_du_growth": packs,
                           "store_du_growth": whole, "ratio_store": whole / ib,
                           "ideal_zstd1_bytes": ib, "new_raw_bytes": ideals[v]["new_raw_bytes"],
                           "ratio_stored": stored / ib, "ratio_packs": packs / ib,
                           "target_ratio_max": 1.5, "pass": packs / ib <= 1.5 and stored / ib <= 1.5})
        peak_rss = max(st["maxrss_kib"] for run in runs for k, st in run["steps"].items()
                       if k.endswith("_cf") and "parts" not in st)
        result["summary"] = {"scenarios": scen, "dedupe": dedupe, "peak_rss_kib": peak_rss,
                             "rss_limit_kib": RSS_LIMIT_KIB, "rss_pass": peak_rss < RSS_LIMIT_KIB}
        machine["loadavg_end"] = loadavg()
        result["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print_report(result)
        log(f"per-run data in {os.path.abspath(args.out)}")
    except BaseException as e:  # keep what was measured, and say what went wrong
        result["error"] = str(e) or type(e).__name__
        machine["loadavg_end"] = loadavg()
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"failed; partial data in {os.path.abspath(args.out)}")
        raise
    finally:
        if args.keep:
            log(f"kept the work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_report(res):
    m = res["machine"]
    mem = m["memory_mib"]
    print(f"command: {res['command']}")
    print(f"date: {res['date']} .. {res['finished']}")
    print(f"build: {res['build']} from {res['source']} (revision {res['source_revision']})"
          + (f"; note: {res['note']}" if res["note"] else ""))
    print(f"machine: nproc {m['nproc']}, {m['cpu']}, kernel {m['kernel']}, memory "
          f"{mem.get('MemTotal')} MiB total / {mem.get('MemFree')} MiB free / "
          f"{mem.get('MemAvailable')} MiB available, {m['zstd'].split(',')[0]}")
    print(f"load average (1/5/15 min): start {m['loadavg_start']}, end {m['loadavg_end']}")
    c = res["config"]
    print(f"group: root {c['root_size']} + data {c['data_size']}, v1 and v2, seed {c['seed']}; "
          f"{c['runs']} run(s), medians; {res['cache']}; --io {c['io']} --threads {c['threads']}")
    print("ratio = yardstick median / chunkferry median (> 1: chunkferry faster); "
          "MB/s = MB (10^6) of image (apparent size) per second; per-run ratios in brackets")
    print()
    hdr = (f"{'scenario':<34} {'cf s':>7} {'cf MB/s':>8} {'yard s':>7} {'yd MB/s':>8} "
           f"{'ratio':>6} {'[min..max]':>12} {'target':>7} {'pass':>5} {'cf RSS MiB':>10}")
    print(hdr)
    print("-" * len(hdr))
    for s in res["summary"]["scenarios"]:
        pr = s["ratio_per_run"]
        target = "-" if s["target_ratio_min"] is None else f">={s['target_ratio_min']:g}"
        ok = "-" if s["pass"] is None else ("PASS" if s["pass"] else "FAIL")
        print(f"{s['scenario']:<34} {s['chunkferry_median_s']:>7.2f} {s['chunkferry_MBps']:>8.0f} "
              f"{s['yardstick_median_s']:>7.2f} {s['yardstick_MBps']:>8.0f} {s['ratio']:>6.2f} "
              f"{f'[{min(pr):.2f}..{max(pr):.2f}]':>12} {target:>7} {ok:>5} "
              f"{s['peak_rss_kib'] / 1024:>10.1f}")
    print("yardsticks: " + "; ".join(sorted({f"{s['scenario'].strip()}: {s['yardstick']}"
                                             for s in res["summary"]["scenarios"]
                                             if not s["scenario"].startswith(" ")})))
    sm = res["summary"]
    print(f"peak RSS of any chunkferry process: {sm['peak_rss_kib'] / 1024:.1f} MiB "
          f"(limit {sm['rss_limit_kib'] // 1024} MiB: {'PASS' if sm['rss_pass'] else 'FAIL'})")
    print()
    hdr = (f"{'dedupe':<8} {'storedBytes MB':>15} {'packs/ du MB':>13} {'ideal MB':>9} "
           f"{'new raw MB':>11} {'stored/ideal':>13} {'du/ideal':>9} {'store du MB':>12} "
           f"{'store/ideal':>12} {'target':>7} {'pass':>5}")
    print(hdr)
    print("-" * len(hdr))
    for d in sm["dedupe"]:
        print(f"{d['version']:<8} {d['stored_bytes'] / MB:>15.1f} {d['packs_du_growth'] / MB:>13.1f} "
              f"{d['ideal_zstd1_bytes'] / MB:>9.1f} {d['new_raw_bytes'] / MB:>11.1f} "
              f"{d['ratio_stored']:>13.2f} {d['ratio_packs']:>9.2f} {d['store_du_growth'] / MB:>12.1f} "
              f"{d['ratio_store']:>12.2f} {'<=1.5':>7} "
              f"{'PASS' if d['pass'] else 'FAIL':>5}")
    print("(v1: everything v1 stores against the ideal of v1 alone; v2: what v2 adds to the store "
          "holding v1 against the ideal of v2 given v1; median over runs. storedBytes: sum of the "
          "imports' JSON; packs/ du: du -sb growth of packs/; store du: of the whole store, index "
          "snapshot and manifests included; pass judges storedBytes and packs/)")


if __name__ == "__main__":
    main()
