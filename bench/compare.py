#!/usr/bin/env python3
"""chunkferry against the tools users choose instead: one command, every phase, one report.

    tools/dev.sh bench quick            # installs the peers, builds, runs this at the quick size
    tools/dev.sh bench full             # the full size, and docs/BENCHMARKS.md's section updated
    python3 bench/compare.py --build build --size quick --out-dir bench-results
    python3 bench/compare.py --report-only bench-results/compare.json --update-docs

The corpus: the deterministic VM-like group of bench/vmgen (a Root volume and a Data volume, two
versions; quick 256M + 128M, full 2G + 1G), or real images (--images V1DIR V2DIR: the same file
names in both, one volume each; a name starting with "root" is the Root volume).

Phases, every tool on the same data in the same run, the tools' order rotated per run:
  import v1, v2  chunkferry import (both volumes)   | borg create --compression lz4 | restic backup
                 | casync make | zstd -1 -T0 | cp (+ fsync of what zstd and cp wrote)
  full sync      both versions into an empty destination, through the daemons:
                 chunkferry sync v1 then v2 to `chunkferry serve` | restic copy v1 then v2 to a
                 REST repository (`rclone serve restic`) | rsync of both versions' raw images to
                 an rsync daemon, whole (and with -z) | rsync of casync's store and indexes
  incremental    the destination holds v1, v2 goes: chunkferry's v2 sync | restic's v2 copy |
                 rsync -I --inplace --no-whole-file of the v2 images over the v1 images (the
                 delta algorithm; and with -z) | rsync of casync's store (v1 + v2) over its v1 copy
  restore        v2 from the sync's destination: chunkferry restore from the daemon | restic
                 restore from the REST repository | borg extract | casync extract | zstd -d | cp
  verify         chunkferry verify --verify full of the destination | restic check --read-data
                 | borg check --verify-data | zstd -t
The sync phases run once per link: loopback, and when the harness may make network namespaces
(root), a veth pair between a client and a server namespace shaped with `tc ... tbf` at 10 Gbit/s
and at 1 Gbit/s; every daemon (chunkferry serve, the rsync daemon, rclone's REST server) lives in
the server namespace. Restore and verify run on loopback.

Per step and process: wall seconds, CPU (user + sys), peak RSS, bytes read and written (the
client's rusage; the daemon's /proc/PID/io and /proc/PID/stat around the step, its reaped children
included), bytes on the wire (the namespace's interface counters: headers included). The page
cache is dropped before every timed process when permitted.

Writes OUT_DIR/compare.json, OUT_DIR/compare.md and the plots (OUT_DIR/*.png, made by
bench/plot_compare.py with python3-matplotlib), prints the table; --update-docs puts the report
between the markers of docs/BENCHMARKS.md and the plots under docs/bench/.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import macro  # noqa: E402  (same directory)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1_000_000
SIZES = {"quick": ("256M", "128M", 1), "full": ("2G", "1G", 3)}
LINKS = {"loopback": None, "10gbit": 10e9, "1gbit": 1e9}  # bits per second; None: unshaped
PEERS = ("restic", "borg", "casync", "rsync", "zstd", "cp", "rclone")
DOC_BEGIN = "<!-- bench/compare.py: begin (generated; edit the harness, not this) -->"
DOC_END = "<!-- bench/compare.py: end -->"
PORTS = {"cf": 7170, "cf-base": 7171, "rsync": 8730, "rest": 8000}


# ---------------------------------------------------------------------------------------------
# Processes: one timed step is one or more processes; daemons are measured around it.

def proc_stat_cpu(pid):
    """CPU seconds of a live process, its reaped children included (utime+stime+cutime+cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def proc_io(pid):
    """(read_bytes, write_bytes) of a live process from /proc/PID/io (reaped children included)."""
    out = {}
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, v = line.split(":")
                out[k] = int(v)
    except OSError:
        pass
    return out.get("read_bytes", 0), out.get("write_bytes", 0)


def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


class Daemon:
    """A server process (in the server namespace when there is one), ready once its port
    accepts connections; measured around each step."""

    def __init__(self, name, argv, net, port, work):
        self.name, self.port, self.net = name, port, net
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(net.server_prefix() + argv, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while not net.server_port_open(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-1500:].decode(errors="replace")

    def sample(self):
        # A forking daemon (rsync) reaps its per-connection child shortly after the client ends:
        # wait for it, so that the child's CPU and I/O are in the parent's counters.
        deadline = time.monotonic() + 5
        while proc_children(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        r, w = proc_io(self.proc.pid)
        return {"cpu_s": proc_stat_cpu(self.proc.pid), "read_bytes": r, "written_bytes": w,
                "wire_bytes": self.net.wire_bytes(self.proc.pid)}

    def stop(self):
        hwm = macro.terminate(self.proc)
        if not self.log.closed:
            self.log.close()
        return hwm


def measure(runner, commands, daemon=None, env=None, cwd=None):
    """Runs `commands` (argv lists, or shell strings) one after the other as one step. Returns
    wall, CPU, peak RSS, bytes read/written of the processes, and the daemon's share."""
    before = daemon.sample() if daemon else None
    step = {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_kib": 0, "read_bytes": 0, "written_bytes": 0,
            "outputs": []}
    for c in commands:
        r = runner.run(c, shell=isinstance(c, str), env=env, cwd=cwd)
        step["wall_s"] += r["seconds"]
        step["cpu_s"] += r["user_s"] + r["sys_s"]
        step["peak_rss_kib"] = max(step["peak_rss_kib"], r["maxrss_kib"])
        step["read_bytes"] += r["read_bytes"]
        step["written_bytes"] += r["written_bytes"]
        step["outputs"].append(r["stdout"][-4000:])
    step["commands"] = [c if isinstance(c, str) else shlex.join(c) for c in commands]
    if daemon:
        after = daemon.sample()
        step["daemon"] = {k: after[k] - before[k] for k in after}
        step["wire_bytes"] = step["daemon"].pop("wire_bytes")
        step["daemon"]["name"] = daemon.name
    return step


# ---------------------------------------------------------------------------------------------
# Two nodes on one machine: network namespaces and a shaped veth pair.

class Net:
    """The client and server namespaces and the veth pair between them; or, when namespaces
    cannot be made, the host's loopback (no shaped links then)."""

    def __init__(self, enabled):
        self.ns = None
        self.reason = None
        if not enabled:
            self.reason = "disabled with --no-netns"
            return
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
            self.reason = "needs root and iproute2 (ip, tc)"
            return
        tag = f"cfb{os.getpid()}"
        c, s = f"{tag}c", f"{tag}s"
        cmds = [["ip", "netns", "add", c], ["ip", "netns", "add", s],
                ["ip", "link", "add", f"{tag}-c", "type", "veth", "peer", "name", f"{tag}-s"],
                ["ip", "link", "set", f"{tag}-c", "netns", c],
                ["ip", "link", "set", f"{tag}-s", "netns", s],
                ["ip", "-n", c, "addr", "add", "10.77.0.1/24", "dev", f"{tag}-c"],
                ["ip", "-n", s, "addr", "add", "10.77.0.2/24", "dev", f"{tag}-s"]]
        for ns, dev in ((c, f"{tag}-c"), (s, f"{tag}-s")):
            cmds += [["ip", "-n", ns, "link", "set", "lo", "up"],
                     ["ip", "-n", ns, "link", "set", dev, "up"]]
        self.ns = {"client": c, "server": s, "cdev": f"{tag}-c", "sdev": f"{tag}-s"}
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                self.close()
                self.ns = None
                self.reason = f"`{shlex.join(cmd)}` failed: {r.stderr.strip()}"
                return
        self.link = "loopback"

    def close(self):
        if self.ns:
            for k in ("client", "server"):
                subprocess.run(["ip", "netns", "del", self.ns[k]], capture_output=True)

    def set_link(self, link):
        """Shapes both directions of the veth pair (tbf), or removes the shaping."""
        self.link = link
        if not self.ns:
            return
        rate = LINKS[link]
        for ns, dev in ((self.ns["client"], self.ns["cdev"]), (self.ns["server"], self.ns["sdev"])):
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                           capture_output=True)
            if rate:
                # The bucket holds 1 ms of the rate, at least 256 KiB. Measured here with one TCP
                # stream: 1 Gbit/s gives 119 MB/s of payload; 10 Gbit/s gives 0.85-1 GB/s, which
                # is what one stream reaches unshaped on 2 cores (the link is not the limit).
                burst = max(256 * 1024, int(rate / 8 * 0.001))
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev,
                                "root", "tbf", "rate", f"{int(rate)}bit", "burst", str(burst),
                                "latency", "50ms"], check=True, capture_output=True)

    def server_prefix(self):
        return ["ip", "netns", "exec", self.ns["server"]] if self.ns else []

    def client_prefix(self):
        """Where a client runs: across the link in the client namespace, or next to the daemons
        (the server namespace's own loopback) for the loopback runs."""
        if not self.ns:
            return []
        ns = self.ns["server"] if self.link == "loopback" else self.ns["client"]
        return ["ip", "netns", "exec", ns]

    def server_addr(self):
        return "10.77.0.2" if self.ns and self.link != "loopback" else "127.0.0.1"

    def listen_addr(self):
        return "0.0.0.0" if self.ns else "127.0.0.1"

    def server_port_open(self, port):
        if not self.ns:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        r = subprocess.run(self.server_prefix() + ["bash", "-c",
                                                   f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                           capture_output=True)
        return r.returncode == 0

    def wire_bytes(self, server_pid):
        """Bytes that crossed the link so far, both directions, headers included: the server
        side's veth, or its loopback (each packet counted once) for loopback runs. Read from the
        server process's view of /proc/net/dev."""
        dev = self.ns["sdev"] if self.ns and self.link != "loopback" else "lo"
        try:
            with open(f"/proc/{server_pid}/net/dev") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name.strip() == dev:
                        v = rest.split()
                        return int(v[8]) if dev == "lo" else int(v[0]) + int(v[8])
        except OSError:
            pass
        return 0


# ---------------------------------------------------------------------------------------------
# The corpus.

class Corpus:
    def __init__(self, v1, v2):
        self.dirs = {"v1": v1, "v2": v2}
        self.files = sorted(f for f in os.listdir(v1) if os.path.isfile(os.path.join(v1, f)))
        if not self.files:
            sys.exit(f"compare.py: no images in {v1}")
        for f in self.files:
            if not os.path.isfile(os.path.join(v2, f)):
                sys.exit(f"compare.py: {v2} lacks {f} (v1 and v2 must hold the same image names)")
        self.logical = {v: sum(os.stat(os.path.join(d, f)).st_size for f in self.files)
                        for v, d in self.dirs.items()}

    def images(self, v):
        return [os.path.join(self.dirs[v], f) for f in self.files]

    @staticmethod
    def vtype(f):
        return "Root" if f.startswith("root") else "Data"


DEBIAN_V1_PACKAGES = "systemd-sysv,openssh-server,python3,ca-certificates,less"
# An update's worth (~20 MB of packages), not a new system: postgresql and git, tried first,
# added 500 MB of new blocks to a 300 MB root.
DEBIAN_V2_PACKAGES = ["nginx-light", "curl", "rsync", "vim-tiny", "cron"]


def debian_images(cache, root_size, data_size, gen, seed, runner):
    """The debian preset: a real Debian 12 root file system (debootstrap --variant=minbase with
    a server's packages), made into an ext4 image with mkfs.ext4 -d; v2 is the same tree after
    `apt-get install` of more packages in a chroot, imaged again. The Data volume is the
    generator's. Built once into `cache` (network and minutes) and reused; not bit-for-bit
    reproducible across days (package versions move)."""
    v1, v2 = os.path.join(cache, "v1"), os.path.join(cache, "v2")
    done = os.path.join(cache, "DONE")
    if os.path.exists(done):
        return v1, v2
    for tool in ("debootstrap", "mkfs.ext4", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"compare.py: --preset debian needs {tool} (apt-get install debootstrap)")
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    tree1, tree2 = os.path.join(cache, "tree-v1"), os.path.join(cache, "tree-v2")
    macro.log("debian preset: debootstrap (once; kept in the cache)")
    runner.run(["debootstrap", "--variant=minbase", f"--include={DEBIAN_V1_PACKAGES}",
                "bookworm", tree1, "http://deb.debian.org/debian"], timed=False)
    runner.run(["cp", "-a", tree1, tree2], timed=False)
    runner.run(["chroot", tree2, "/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "apt-get",
                "install", "-y", "--no-install-recommends"] + DEBIAN_V2_PACKAGES, timed=False)
    gen_dir = os.path.join(cache, "gen")
    runner.run([gen, "--out", gen_dir, "--root-size", "4M", "--data-size", data_size,
                "--versions", "2", "--seed", str(seed)], timed=False)
    for v, tree in (("v1", tree1), ("v2", tree2)):
        os.makedirs(os.path.join(cache, v))
        runner.run(["mkfs.ext4", "-F", "-q", "-b", "4096", "-d", tree,
                    os.path.join(cache, v, "root.img"), root_size], timed=False)
        os.rename(os.path.join(gen_dir, v, "data1.img"), os.path.join(cache, v, "data1.img"))
    for d in (tree1, tree2, gen_dir):
        shutil.rmtree(d)
    open(done, "w").close()
    return v1, v2


# ---------------------------------------------------------------------------------------------
# One run.

class Bench:
    def __init__(self, args, work, corpus, net, runner, links):
        self.a, self.work, self.corpus, self.net, self.runner = args, work, corpus, net, runner
        self.links = links
        build = os.path.abspath(args.build)
        self.cf = os.path.join(build, "tools", "chunkferry")
        self.group = {v: macro.uuid_of(f"compare-group-{v}") for v in ("v1", "v2")}
        self.pw = os.path.join(work, "restic.pw")
        with open(self.pw, "w") as f:
            f.write("chunkferry-bench\n")
        self.env = dict(os.environ, RESTIC_PASSWORD_FILE=self.pw, BORG_PASSPHRASE="",
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                        RCLONE_CONFIG=os.path.join(work, "rclone.conf"))
        open(self.env["RCLONE_CONFIG"], "w").close()

    def backup_uuid(self, v, f):
        return macro.uuid_of(f"compare-backup-{v}-{f}")

    def untimed(self, argv, **kw):
        return self.runner.run(argv, timed=False, env=self.env, **kw)

    def step(self, commands, daemon=None, cwd=None):
        return measure(self.runner, commands, daemon, env=self.env, cwd=cwd)

    # -- import ------------------------------------------------------------------------------
    def prepare_sources(self, rd):
        p = {k: os.path.join(rd, k) for k in ("src", "borg", "restic", "cas", "zst", "cp",
                                             "src-base")}
        self.untimed([self.cf, "store", "init", "--store", p["src"], "--quiet"])
        if self.a.baseline:
            # The baseline's own source store (its formats may predate this build's), v1 only.
            base, c = self.a.baseline, self.corpus
            self.untimed([base, "store", "init", "--store", p["src-base"], "--quiet"])
            for f in c.files:
                self.untimed([base, "import", "--store", p["src-base"], "--image",
                              os.path.join(c.dirs["v1"], f), "--group", self.group["v1"], "--vm",
                              macro.VM_UUID, "--volume", macro.uuid_of(f"compare-vol-{f}"),
                              "--uuid", self.backup_uuid("v1", f), "--type", c.vtype(f),
                              "--quiet"])
        self.untimed(["borg", "init", "-e", "none", p["borg"]])
        self.untimed(["restic", "-r", p["restic"], "init", "-q"])
        os.makedirs(os.path.join(p["cas"], "store"))
        for v in ("v1", "v2"):
            os.makedirs(os.path.join(p["zst"], v))
            os.makedirs(os.path.join(p["cp"], v))
        return p

    def import_steps(self, p, v):
        c = self.corpus
        imgs = c.images(v)
        cf = [[self.cf, "import", "--store", p["src"], "--image", os.path.join(c.dirs[v], f),
               "--group", self.group[v], "--vm", macro.VM_UUID,
               "--volume", macro.uuid_of(f"compare-vol-{f}"), "--uuid", self.backup_uuid(v, f),
               "--type", c.vtype(f), "--json", "--quiet", "--io", self.a.io] for f in c.files]
        cas = [["casync", "make", "--store=" + os.path.join(p["cas"], "store"),
                os.path.join(p["cas"], f"{v}-{f}.caibx"), os.path.join(c.dirs[v], f)]
               for f in c.files]
        q = shlex.quote
        zdir, cdir = os.path.join(p["zst"], v), os.path.join(p["cp"], v)
        parent, rel = os.path.split(c.dirs[v])
        return [
            ("chunkferry", lambda: self.step(cf)),
            # borg and restic back up the version's folder, named relative to its parent.
            ("borg", lambda: self.step([["borg", "create", "--compression", "lz4",
                                         f"{p['borg']}::{v}", rel]], cwd=parent)),
            ("restic", lambda: self.step([["restic", "-r", p["restic"], "backup", "-q", "--host",
                                           "bench", "--tag", v, rel]], cwd=parent)),
            ("casync", lambda: self.step(cas)),
            ("zstd", lambda: self.step([f"zstd -1 -T0 -q -f --output-dir-flat {q(zdir)} "
                                        + " ".join(q(i) for i in imgs) + f" && sync {q(zdir)}/*"])),
            ("cp", lambda: self.step([f"cp --sparse=always " + " ".join(q(i) for i in imgs)
                                      + f" {q(cdir)}/ && sync {q(cdir)}/*"])),
        ]

    # -- sync over one link --------------------------------------------------------------------
    def sync_link(self, p, ld, link, run_index, with_restore):
        """Full and incremental sync of every tool over `link`; then restore and verify when
        `with_restore`. Returns {phase: {tool: step}} and the daemons' peak RSS."""
        net, cf = self.net, self.cf
        net.set_link(link)
        dst = os.path.join(ld, "cf-dst")
        self.untimed([cf, "store", "init", "--store", dst, "--quiet"])
        rs_root = os.path.join(ld, "rsync")
        rest_root = os.path.join(ld, "rest")
        for d in (rs_root, rest_root):
            os.makedirs(d)
        conf = os.path.join(ld, "rsyncd.conf")
        with open(conf, "w") as f:
            f.write(f"use chroot = false\npid file = {ld}/rsyncd.pid\n"
                    f"[dst]\npath = {rs_root}\nread only = false\nuid = root\ngid = root\n")
        listen = net.listen_addr()
        daemons = {}
        out = {"full": {}, "incremental": {}}
        try:
            daemons["cf"] = Daemon("chunkferry-serve", [
                cf, "serve", "--store", dst, "--io", self.a.io,
                "--listen", f"{listen}:{PORTS['cf']}"], net, PORTS["cf"], ld)
            base_dst = os.path.join(ld, "cf-base-dst")
            if self.a.baseline and link == "loopback":
                self.untimed([self.a.baseline, "store", "init", "--store", base_dst, "--quiet"])
                daemons["cf-base"] = Daemon("chunkferry-baseline-serve", [
                    self.a.baseline, "serve", "--store", base_dst, "--io", self.a.io,
                    "--listen", f"{listen}:{PORTS['cf-base']}"], net, PORTS["cf-base"], ld)
            daemons["rsync"] = Daemon("rsyncd", [
                "rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={PORTS['rsync']}",
                f"--address={listen}"], net, PORTS["rsync"], ld)
            daemons["rest"] = Daemon("rclone-serve-restic", [
                "rclone", "serve", "restic", "--addr", f"{listen}:{PORTS['rest']}", rest_root],
                net, PORTS["rest"], ld)
            addr = net.server_addr()
            cli = net.client_prefix()
            key = os.path.join(dst, "auth.key")
            rsync_url = f"rsync://{addr}:{PORTS['rsync']}/dst"
            rest_url = f"rest:http://{addr}:{PORTS['rest']}/"

            def cf_sync(v):
                s = self.step([cli + [cf, "sync", "--from", p["src"], "--to",
                                      f"tcp://{addr}:{PORTS['cf']}", "--group", self.group[v],
                                      "--key-file", key, "--connections", self.a.connections,
                                      "--json", "--quiet", "--io", self.a.io]], daemons["cf"])
                s["json"] = json.loads(s["outputs"][0])
                return s

            def baseline_sync():  # v1 into an empty store, as chunkferry's first step
                s = self.step([cli + [self.a.baseline, "sync", "--from", p["src-base"], "--to",
                                      f"tcp://{addr}:{PORTS['cf-base']}", "--group",
                                      self.group["v1"], "--key-file",
                                      os.path.join(base_dst, "auth.key"), "--connections",
                                      self.a.connections, "--json", "--quiet", "--io",
                                      self.a.io]], daemons["cf-base"])
                return s

            def restic_copy(v):
                return self.step([cli + ["restic", "-r", rest_url, "copy", "-q", "--from-repo",
                                         p["restic"], "--from-password-file", self.pw, "--tag",
                                         v]], daemons["rest"])

            def rsync(args, *pairs):  # pairs: (source, destination folder on the daemon)
                return self.step([cli + ["rsync", "-a", "--fsync"] + args + [
                    src, f"{rsync_url}/{sub}"] for src, sub in pairs], daemons["rsync"])

            v1, v2 = self.corpus.dirs["v1"] + "/", self.corpus.dirs["v2"] + "/"
            cas, cas_v1 = p["cas"] + "/", p["cas_v1"]
            # Destinations for the incremental runs of the tools whose full run sends both
            # versions at once: they get v1 first, untimed.
            for sub in ("delta/", "delta-z/"):
                self.untimed(cli + ["rsync", "-a", "--sparse", v1, f"{rsync_url}/{sub}"])
            self.untimed(cli + ["rsync", "-a", cas_v1 + "/", f"{rsync_url}/casync-inc/"])
            self.untimed(cli + ["restic", "-r", rest_url, "init", "-q", "--from-repo",
                                p["restic"], "--from-password-file", self.pw,
                                "--copy-chunker-params"])

            # chunkferry and restic: v1 into the empty destination, then v2 (the incremental
            # step); their full sync is the sum. The others send both versions in one go.
            first = macro.alternate(run_index, [
                ("chunkferry", lambda: cf_sync("v1")),
                ("restic", lambda: restic_copy("v1")),
                ("rsync-images", lambda: rsync(["--sparse"], (v1, "whole-v1/"),
                                               (v2, "whole-v2/"))),
                ("rsync-images-z", lambda: rsync(["--sparse", "-z"], (v1, "whole-z-v1/"),
                                                 (v2, "whole-z-v2/"))),
                ("rsync-casync", lambda: rsync([], (cas, "casync-full/"))),
            ] + ([("chunkferry-baseline", baseline_sync)] if "cf-base" in daemons else []))
            if "chunkferry-baseline" in first:
                out["baseline"] = first.pop("chunkferry-baseline")
            second = macro.alternate(run_index, [
                ("chunkferry", lambda: cf_sync("v2")),
                ("restic", lambda: restic_copy("v2")),
                # -I: v1 and v2 may share sizes and mtimes, which rsync's quick check would skip.
                ("rsync-images-delta", lambda: rsync(["-I", "--inplace", "--no-whole-file"],
                                                     (v2, "delta/"))),
                ("rsync-images-delta-z", lambda: rsync(["-I", "--inplace", "--no-whole-file",
                                                        "-z"], (v2, "delta-z/"))),
                ("rsync-casync", lambda: rsync([], (cas, "casync-inc/"))),
            ])
            for tool in ("chunkferry", "restic"):
                out["full"][tool] = combine(first[tool], second[tool])
                out["full"][tool]["first"] = first[tool]
            for tool in ("rsync-images", "rsync-images-z", "rsync-casync"):
                out["full"][tool] = first[tool]
            out["incremental"] = second
            if with_restore:
                out.update(self.restore_and_verify(p, ld, addr, key, rest_url, daemons,
                                                   run_index))
        finally:
            hwm = {name: d.stop() for name, d in daemons.items()}
        return out, hwm

    # -- restore and verify (loopback) ----------------------------------------------------------
    def restore_and_verify(self, p, ld, addr, key, rest_url, daemons, run_index):
        c, cf, q = self.corpus, self.cf, shlex.quote
        cli = self.net.client_prefix()
        outs = {t: os.path.join(ld, f"restore-{t}") for t in
                ("chunkferry", "restic", "borg", "casync", "zstd", "cp")}
        for d in outs.values():
            os.makedirs(d)
        cf_cmds = [cli + [cf, "restore", "--store", f"tcp://{addr}:{PORTS['cf']}", "--key-file",
                          key, "--backup", self.backup_uuid("v2", f), "--output",
                          os.path.join(outs["chunkferry"], f), "--json", "--quiet", "--io",
                          self.a.io] for f in c.files]
        cas = [["casync", "extract", "--store=" + os.path.join(p["cas"], "store"),
                os.path.join(p["cas"], f"v2-{f}.caibx"), os.path.join(outs["casync"], f)]
               for f in c.files]
        zsts = " ".join(q(os.path.join(p["zst"], "v2", f + ".zst")) for f in c.files)
        cps = " ".join(q(os.path.join(p["cp"], "v2", f)) for f in c.files)
        restore = macro.alternate(run_index, [
            ("chunkferry", lambda: self.step(cf_cmds, daemons["cf"])),
            ("restic", lambda: self.step([cli + ["restic", "-r", rest_url, "restore", "latest",
                                                 "--tag", "v2", "--target", outs["restic"]]],
                                         daemons["rest"])),
            ("borg", lambda: self.step([["borg", "extract", "--sparse", f"{p['borg']}::v2"]],
                                       cwd=outs["borg"])),
            ("casync", lambda: self.step(cas)),
            ("zstd", lambda: self.step([f"zstd -d -q -f --sparse --output-dir-flat "
                                        f"{q(outs['zstd'])} {zsts} && sync {q(outs['zstd'])}/*"])),
            ("cp", lambda: self.step([f"cp --sparse=always {cps} {q(outs['cp'])}/ && "
                                      f"sync {q(outs['cp'])}/*"])),
        ])
        if run_index == 0:  # every tool gave back the v2 images, byte for byte
            for tool, d in outs.items():
                for f in c.files:
                    found = [os.path.join(r, f) for r, _, fs in os.walk(d) if f in fs]
                    want = os.path.join(c.dirs["v2"], f)
                    if len(found) != 1 or subprocess.run(["cmp", "-s", found[0], want]).returncode:
                        raise RuntimeError(f"{tool} did not restore {f} identically ({found})")
        for d in outs.values():
            macro.discard_later(d, self.work)
        verify = macro.alternate(run_index, [
            ("chunkferry", lambda: self.step([self.net.server_prefix() + [
                cf, "verify", "--store", os.path.join(ld, "cf-dst"), "--verify", "full", "--json",
                "--quiet", "--io", self.a.io]])),
            ("restic", lambda: self.step([["restic", "-r", os.path.join(ld, "rest"), "check",
                                           "-q", "--read-data"]])),
            ("borg", lambda: self.step([["borg", "check", "--verify-data", p["borg"]]])),
            ("zstd", lambda: self.step([f"zstd -t -q {q(p['zst'])}/v1/* {q(p['zst'])}/v2/*"])),
        ])
        return {"restore": restore, "verify": verify}

    def run(self, r):
        macro.empty_trash(self.work)
        rd = os.path.join(self.work, f"run{r}")
        os.makedirs(rd)
        p = self.prepare_sources(rd)
        result = {"import_v1": {}, "import_v2": {}, "links": {}, "daemon_peak_rss_kib": {}}
        for v in ("v1", "v2"):
            result[f"import_{v}"] = macro.alternate(r, self.import_steps(p, v))
            if v == "v1":  # casync's store as v1 left it: the incremental rsync's starting point
                p["cas_v1"] = os.path.join(rd, "cas-v1")
                self.untimed(["cp", "-a", p["cas"], p["cas_v1"]])
        cfj = [json.loads(o) for v in ("v1", "v2")
               for o in result[f"import_{v}"]["chunkferry"]["outputs"]]
        result["stored_bytes"] = {v: sum(j["storedBytes"] for j in cfj[i * len(self.corpus.files):
                                                                       (i + 1) * len(self.corpus.files)])
                                  for i, v in enumerate(("v1", "v2"))}
        # Loopback last, so that restore and verify follow it with its destinations in place.
        links = [l for l in self.links if l != "loopback"] + ["loopback"]
        for link in links:
            macro.log(f"  sync over {link}")
            ld = os.path.join(rd, f"link-{link}")
            os.makedirs(ld)
            phases, hwm = self.sync_link(p, ld, link, r, link == "loopback")
            result["links"][link] = phases
            for k, v in hwm.items():
                result["daemon_peak_rss_kib"][k] = max(result["daemon_peak_rss_kib"].get(k, 0), v)
            macro.discard_later(ld, self.work)
        macro.discard_later(rd, self.work)
        return result


def combine(a, b):
    """Two steps as one: times, CPU and bytes summed, peak RSS the larger."""
    out = {}
    for k in ("wall_s", "cpu_s", "read_bytes", "written_bytes", "wire_bytes"):
        out[k] = a.get(k, 0) + b.get(k, 0)
    out["peak_rss_kib"] = max(a["peak_rss_kib"], b["peak_rss_kib"])
    if "daemon" in a:
        out["daemon"] = {k: a["daemon"][k] + b["daemon"][k] for k in a["daemon"] if k != "name"}
        out["daemon"]["name"] = a["daemon"]["name"]
    out["commands"] = a["commands"] + b["commands"]
    if "json" in a and "json" in b:  # chunkferry's own figures, summed where they are numbers
        out["json"] = {k: a["json"][k] + b["json"][k] for k in a["json"]
                       if isinstance(a["json"][k], (int, float)) and k in b["json"]}
    return out


# ---------------------------------------------------------------------------------------------
# Summary, targets and report.

def versions_of(tool):
    try:
        if tool == "chunkferry":
            return macro.git_describe(ROOT)
        argv = {"restic": ["restic", "version"], "borg": ["borg", "--version"],
                "casync": ["casync", "--version"], "rsync": ["rsync", "--version"],
                "zstd": ["zstd", "--version"], "cp": ["cp", "--version"],
                "rclone": ["rclone", "version"]}[tool]
        out = subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()
        return out[0].strip("* ") if out else "unknown"
    except OSError:
        return "not installed"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(result):
    """Medians over the runs: {phase-key: {tool: {...}}}, and the targets' verdicts."""
    runs = result["runs"]
    L = result["logical_bytes"]
    stored = result["stored_bytes"]
    logical = {"import_v1": L["v1"], "import_v2": L["v2"], "full": L["v1"] + L["v2"],
               "incremental": L["v2"], "restore": L["v2"], "verify": L["v1"] + L["v2"]}
    table = {}

    def add(key, phase, steps_per_run):
        tools = sorted({t for s in steps_per_run for t in s})
        table[key] = {}
        for t in tools:
            ss = [s[t] for s in steps_per_run if t in s]
            wall = med([s["wall_s"] for s in ss])
            d = {"wall_s": wall, "cpu_s": med([s["cpu_s"] for s in ss]),
                 "daemon_cpu_s": med([s.get("daemon", {}).get("cpu_s") for s in ss]),
                 "peak_rss_mib": max(s["peak_rss_kib"] for s in ss) / 1024,
                 "read_bytes": med([s["read_bytes"] + s.get("daemon", {}).get("read_bytes", 0)
                                    for s in ss]),
                 "written_bytes": med([s["written_bytes"]
                                       + s.get("daemon", {}).get("written_bytes", 0) for s in ss]),
                 "wire_bytes": med([s.get("wire_bytes") for s in ss]),
                 "MBps": logical[phase] / wall / MB if wall else None,
                 "runs_wall_s": [s["wall_s"] for s in ss]}
            if t == "chunkferry" and "json" in ss[0]:
                d["plan_s"] = med([s["json"]["planSeconds"] for s in ss])
                d["transfer_s"] = med([s["json"]["transferSeconds"] for s in ss])
                d["commit_s"] = med([s["json"]["commitSeconds"] for s in ss])
                d["payload_bytes"] = med([s["json"]["wireBytes"] for s in ss])
            if t == "chunkferry" and "first" in ss[0]:
                d["first_cpu_s"] = med([s["first"]["cpu_s"] for s in ss])
                d["first_daemon_cpu_s"] = med([s["first"]["daemon"]["cpu_s"] for s in ss])
                d["first_wall_s"] = med([s["first"]["wall_s"] for s in ss])
            table[key][t] = d

    for phase in ("import_v1", "import_v2"):
        add(phase, phase, [r[phase] for r in runs])
    links = list(runs[0]["links"])
    for link in links:
        for phase in ("full", "incremental"):
            add(f"{phase}@{link}", phase, [r["links"][link][phase] for r in runs])
    for phase in ("restore", "verify"):
        add(phase, phase, [r["links"]["loopback"][phase] for r in runs])

    def ratio(key, peer, tool="chunkferry"):
        t = table.get(key, {})
        if peer not in t or tool not in t or not t[tool]["wall_s"]:
            return None
        return t[peer]["wall_s"] / t[tool]["wall_s"]

    targets = []

    def target(name, value, op, bound, unit="x"):
        ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
        targets.append({"name": name, "value": value, "op": op, "bound": bound, "unit": unit,
                        "pass": ok})

    imp = {}
    for peer in ("borg", "restic", "zstd"):
        # Import of both versions: summed over v1 and v2.
        cfs = sum(table[p]["chunkferry"]["wall_s"] for p in ("import_v1", "import_v2"))
        ps = sum(table[p][peer]["wall_s"] for p in ("import_v1", "import_v2"))
        imp[peer] = ps / cfs
    target("import vs borg create --compression lz4", imp["borg"], ">=", 5)
    target("import vs restic backup", imp["restic"], ">=", 10)
    target("import vs zstd -1 -T0", imp["zstd"], ">=", 1)
    target("full sync vs restic copy", ratio("full@loopback", "restic"), ">=", 30)
    target("full sync vs rsync of the raw images", ratio("full@loopback", "rsync-images"), ">=", 10)
    target("full sync vs rsync of casync's store", ratio("full@loopback", "rsync-casync"), ">=", 10)
    target("incremental vs rsync delta of the raw images",
           ratio("incremental@loopback", "rsync-images-delta"), ">=", 40)
    target("incremental vs rsync of casync's store",
           ratio("incremental@loopback", "rsync-casync"), ">=", 10)
    target("incremental vs restic copy", ratio("incremental@loopback", "restic"), ">=", 25)
    inc = table["incremental@loopback"]["chunkferry"]
    target("incremental payload / new compressed records", inc["payload_bytes"] / stored["v2"]
           if stored["v2"] else None, "<=", 1.05)
    if "full@1gbit" in table:
        f = table["full@1gbit"]["chunkferry"]
        must = stored["v1"] + stored["v2"]
        target("full sync on 1 Gbit/s vs (stored bytes / link rate)",
               f["wall_s"] / (must / (1e9 / 8)), "<=", 1.15)
        i = table["incremental@1gbit"]["chunkferry"]
        target("incremental on 1 Gbit/s vs (new bytes / link rate + planning)",
               i["wall_s"] / (stored["v2"] / (1e9 / 8) + i["plan_s"]), "<=", 1.2)
    full = table["full@loopback"]["chunkferry"]
    cpu_v1 = full["first_cpu_s"] + full["first_daemon_cpu_s"]
    target("full sync CPU (client + daemon) per GB of v1 records, CPU-s",
           cpu_v1 / (stored["v1"] / 1e9), "<=", 1.125 / 0.592, unit=" CPU-s/GB")
    base = [r["links"]["loopback"]["baseline"] for r in runs
            if "baseline" in r["links"].get("loopback", {})]
    baseline = None
    if base:
        # The same v1 sync by the baseline build, alternating with this one in the same run: the
        # figure the issue asks for (25% below), free of the machine's day-to-day drift.
        bc, bd = med([b["cpu_s"] for b in base]), med([b["daemon"]["cpu_s"] for b in base])
        baseline = {"rev": result.get("baseline_rev", "baseline"), "client_s": bc, "daemon_s": bd,
                    "wall_s": med([b["wall_s"] for b in base]),
                    "runs_cpu_s": [b["cpu_s"] + b["daemon"]["cpu_s"] for b in base]}
        target(f"full sync CPU (client + daemon) vs {baseline['rev']} in the same run",
               cpu_v1 / (bc + bd), "<=", 0.75)
    rss = max([d["peak_rss_mib"] for k in table for t, d in table[k].items()
               if t == "chunkferry"] + [r["daemon_peak_rss_kib"].get("cf", 0) / 1024 for r in runs])
    target("peak RSS of every chunkferry process, MiB", rss, "<=", 256, unit=" MiB")
    return {"table": table, "targets": targets, "cpu_full_v1": {
        "client_s": full["first_cpu_s"], "daemon_s": full["first_daemon_cpu_s"],
        "stored_v1_bytes": stored["v1"], "baseline": baseline}}


PHASE_TITLES = {"import_v1": "import v1", "import_v2": "import v2 (store holds v1)",
                "restore": "restore v2 (loopback)", "verify": "verify"}


def phase_title(key):
    if key in PHASE_TITLES:
        return PHASE_TITLES[key]
    phase, link = key.split("@")
    what = "full sync, v1 + v2" if phase == "full" else "incremental sync, v2 (dst holds v1)"
    return f"{what}, {link}"


def fmt_bytes(b):
    return "–" if b is None else f"{b / MB:,.1f} MB"


def render_markdown(result, summary, plots):
    m = result["machine"]
    lines = [DOC_BEGIN, "", "## chunkferry against its peers (`bench/compare.py`)", "",
             f"Generated by `{result['command']}` on {result['date']}, chunkferry "
             f"{result['versions']['chunkferry']}, {m['cpus']} cores ({m['cpu']}), "
             f"{m['mem_mib']} MiB, kernel {m['kernel']}; {result['cache']}; load average at "
             f"start {result['loadavg_start']}, at end {result['loadavg_end']}; "
             f"{len(result['runs'])} run(s), medians shown.", "",
             f"Corpus: {result['corpus']}: v1 {result['logical_bytes']['v1'] / MB:,.0f} MB of "
             f"images, v2 {result['logical_bytes']['v2'] / MB:,.0f} MB; chunkferry stored "
             f"{result['stored_bytes']['v1'] / MB:,.1f} MB of records for v1 and "
             f"{result['stored_bytes']['v2'] / MB:,.1f} MB more for v2.", "",
             "Peers: " + "; ".join(f"{t} `{v}`" for t, v in result["versions"].items()
                                   if t != "chunkferry") + ".", "",
             f"Links: {result['net']}.", "", "### Targets", "",
             "| target | measured | bound | |", "|---|---:|---:|---|"]
    for t in summary["targets"]:
        v = "–" if t["value"] is None else f"{t['value']:.3g}{t['unit']}"
        verdict = "–" if t["pass"] is None else ("PASS" if t["pass"] else "**MISS**")
        lines.append(f"| {t['name']} | {v} | {t['op']} {t['bound']:.3g}{t['unit']} | {verdict} |")
    lines += ["", "### Every phase", "",
              "Wall time; MB/s of images (apparent size); CPU of the client (and of the daemon "
              "it talked to); peak RSS of the client; bytes read and written (client + daemon); "
              "bytes on the link, headers included.", ""]
    for key, tools in summary["table"].items():
        lines += [f"**{phase_title(key)}**", "",
                  "| tool | wall | MB/s | CPU client + daemon | peak RSS | read | written | wire |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for t, d in sorted(tools.items(), key=lambda kv: kv[1]["wall_s"]):
            dcpu = f" + {d['daemon_cpu_s']:.2f}" if d["daemon_cpu_s"] is not None else ""
            lines.append(f"| {t} | {d['wall_s']:.2f} s | {d['MBps']:,.0f} | {d['cpu_s']:.2f}{dcpu} s"
                         f" | {d['peak_rss_mib']:.0f} MiB | {fmt_bytes(d['read_bytes'])} | "
                         f"{fmt_bytes(d['written_bytes'])} | {fmt_bytes(d['wire_bytes'])} |")
        cf = tools.get("chunkferry", {})
        if "plan_s" in cf:
            lines += ["", f"chunkferry's sync: plan {cf['plan_s']:.2f} s (manifests, bases, "
                          f"have-queries), transfer {cf['transfer_s']:.2f} s, commit "
                          f"{cf['commit_s']:.2f} s; payload {fmt_bytes(cf['payload_bytes'])}."]
        lines.append("")
    c = summary["cpu_full_v1"]
    lines += [f"Full sync of v1 (empty destination, full verification on the daemon): client "
              f"{c['client_s']:.2f} + daemon {c['daemon_s']:.2f} CPU-seconds for "
              f"{c['stored_v1_bytes'] / MB:,.1f} MB of records."]
    b = c.get("baseline")
    if b:
        lines += [f"The same sync by chunkferry {b['rev']} (its own build, source store and "
                  f"daemon; alternating with this build in each run): client {b['client_s']:.2f} "
                  f"+ daemon {b['daemon_s']:.2f} CPU-seconds, wall {b['wall_s']:.2f} s; per run "
                  + ", ".join(f"{x:.2f}" for x in b["runs_cpu_s"]) + " CPU-s."]
    lines += [""]
    for name, title in plots:
        lines += [f"![{title}](bench/{name})", ""]
    lines += ["Commands of each step: `compare.json` (`runs[].…commands`).", "", DOC_END]
    return "\n".join(lines) + "\n"


def print_table(summary):
    print(f"{'phase':44s} {'tool':22s} {'wall s':>8s} {'MB/s':>8s} {'CPU s':>7s} {'dCPU s':>7s} "
          f"{'RSS MiB':>8s} {'wire MB':>9s}")
    for key, tools in summary["table"].items():
        for t, d in sorted(tools.items(), key=lambda kv: kv[1]["wall_s"]):
            dc = f"{d['daemon_cpu_s']:7.2f}" if d["daemon_cpu_s"] is not None else f"{'':7s}"
            wire = f"{d['wire_bytes'] / MB:9.1f}" if d["wire_bytes"] is not None else f"{'':9s}"
            print(f"{phase_title(key):44s} {t:22s} {d['wall_s']:8.2f} {d['MBps']:8.0f} "
                  f"{d['cpu_s']:7.2f} {dc} {d['peak_rss_mib']:8.0f} {wire}")
    print()
    for t in summary["targets"]:
        v = "n/a" if t["value"] is None else f"{t['value']:.3g}{t['unit']}"
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        print(f"  {t['name']:66s} {v:>16s}  ({t['op']} {t['bound']:.3g})  {verdict}")


def report(result, out_dir, update_docs):
    summary = summarize(result)
    result["summary"] = summary
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump(result, f, indent=1)
    plots = []
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = subprocess.run([py, os.path.join(ROOT, "bench", "plot_compare.py"),
                        os.path.join(out_dir, "compare.json"), out_dir],
                       capture_output=True, text=True)
    if r.returncode == 0:
        plots = [tuple(line.split("\t", 1)) for line in r.stdout.splitlines() if "\t" in line]
    else:
        macro.log(f"no plots: {r.stderr.strip()[-500:]}")
    md = render_markdown(result, summary, plots)
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
        f.write(md)
    print_table(summary)
    if update_docs:
        docs = os.path.join(ROOT, "docs", "BENCHMARKS.md")
        with open(docs) as f:
            text = f.read()
        if DOC_BEGIN in text and DOC_END in text:
            head, rest = text.split(DOC_BEGIN, 1)
            text = head + md.rstrip("\n") + rest.split(DOC_END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + md
        with open(docs, "w") as f:
            f.write(text)
        os.makedirs(os.path.join(ROOT, "docs", "bench"), exist_ok=True)
        for name, _ in plots:
            shutil.copy(os.path.join(out_dir, name), os.path.join(ROOT, "docs", "bench", name))
        macro.log(f"updated {docs} and docs/bench/")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="CMake build dir (default: build)")
    ap.add_argument("--size", choices=sorted(SIZES), default="quick",
                    help="quick: 256M + 128M, 1 run; full: 2G + 1G, 3 runs")
    ap.add_argument("--runs", type=int, default=None, help="runs (default: the size's)")
    ap.add_argument("--images", nargs=2, metavar=("V1DIR", "V2DIR"),
                    help="real images instead of the generated group")
    ap.add_argument("--preset", choices=("generated", "debian"), default="generated",
                    help="generated: bench/vmgen's VM-like group; debian: a real Debian 12 root "
                         "file system (debootstrap, mkfs.ext4 -d; v2 after package installs) "
                         "plus the generated Data volume, cached in --cache")
    ap.add_argument("--cache", default="/var/tmp/cf-compare-images",
                    help="where the debian preset's images are kept between runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=None, help="work dir (default /var/tmp/cf-compare.XXXXXX)")
    ap.add_argument("--out-dir", default="bench-results", help="report, JSON and plots")
    ap.add_argument("--links", default=",".join(LINKS),
                    help="links to sync over, of " + ", ".join(LINKS))
    ap.add_argument("--no-netns", action="store_true", help="loopback of the host only")
    ap.add_argument("--baseline", metavar="BIN", default=None,
                    help="a chunkferry binary of an earlier build: its v1 full sync (loopback) "
                         "alternates with this build's, for the CPU target in the same run")
    ap.add_argument("--baseline-rev", default="baseline", help="names --baseline in the report")
    ap.add_argument("--connections", default="2")
    ap.add_argument("--io", default="auto")
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--update-docs", action="store_true",
                    help="write the report into docs/BENCHMARKS.md and the plots to docs/bench/")
    ap.add_argument("--report-only", metavar="JSON",
                    help="only make the report again from a compare.json")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    if args.report_only:
        with open(args.report_only) as f:
            report(json.load(f), args.out_dir, args.update_docs)
        return
    root_size, data_size, runs = SIZES[args.size]
    runs = args.runs or runs
    missing = [t for t in PEERS if shutil.which(t) is None]
    if missing:
        sys.exit(f"compare.py: not installed: {', '.join(missing)} (tools/dev.sh bench installs "
                 "them: apt-get install restic borgbackup casync rsync zstd rclone)")
    for link in args.links.split(","):
        if link not in LINKS:
            ap.error(f"--links: unknown link '{link}'")
    macro.stop_on_signals()
    build = os.path.abspath(args.build)
    work = macro.make_work_dir(args.work, "compare", "compare.py")
    runner = macro.Runner(want_cold=not args.warm)
    net = Net(not args.no_netns)
    if net.ns:
        links_used = [l for l in LINKS if l in args.links.split(",") or l == "loopback"]
        net_desc = ("a veth pair between two network namespaces made by the harness, shaped with "
                    "`tc qdisc add dev DEV root tbf rate R burst max(256 KiB, 1 ms of R) "
                    "latency 50ms` on both ends; loopback = client and daemons in the server "
                    "namespace, on its own lo")
    else:
        links_used = ["loopback"]
        net_desc = f"host loopback only ({net.reason}): no shaped links"
        macro.log(f"no network namespaces: {net.reason}")
    result = macro.result_header(runner)
    result["versions"] = {t: versions_of(t) for t in ("chunkferry",) + PEERS}
    result["machine"] = {"cpus": os.cpu_count(), "cpu": macro.cpu_model(),
                         "mem_mib": macro.meminfo().get("MemTotal"),
                         "kernel": platform.release()}
    result["net"] = net_desc
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        if not os.access(args.baseline, os.X_OK):
            sys.exit(f"compare.py: --baseline {args.baseline} is not an executable")
        result["baseline_rev"] = args.baseline_rev
    try:
        if args.images:
            corpus = Corpus(os.path.abspath(args.images[0]), os.path.abspath(args.images[1]))
            result["corpus"] = f"images {args.images[0]} and {args.images[1]}"
        elif args.preset == "debian":
            root_size = "1G" if args.size == "quick" else root_size
            packages = macro.uuid_of(DEBIAN_V1_PACKAGES + ",".join(DEBIAN_V2_PACKAGES))[:8]
            cache = os.path.join(args.cache, f"debian-{root_size}-{data_size}-{packages}")
            v1, v2 = debian_images(cache, root_size, data_size,
                                   os.path.join(build, "bench", "vmgen", "make_vm_group"),
                                   args.seed, runner)
            corpus = Corpus(v1, v2)
            result["corpus"] = (f"a Debian 12 root file system (debootstrap minbase + "
                                f"{DEBIAN_V1_PACKAGES}; v2 + {', '.join(DEBIAN_V2_PACKAGES)}; "
                                f"mkfs.ext4 -d, {root_size}) and the generated Data volume "
                                f"({data_size}, seed {args.seed})")
        else:
            images = os.path.join(work, "images")
            gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
            runner.run([gen, "--out", images, "--root-size", root_size, "--data-size", data_size,
                        "--versions", "2", "--seed", str(args.seed)], timed=False)
            corpus = Corpus(os.path.join(images, "v1"), os.path.join(images, "v2"))
            result["corpus"] = (f"the generated VM-like group (bench/vmgen, seed {args.seed}: "
                                f"root {root_size} + data {data_size})")
        result["logical_bytes"] = corpus.logical
        bench = Bench(args, work, corpus, net, runner, links_used)
        for r in range(runs):
            macro.log(f"run {r + 1}/{runs} (load average {macro.loadavg()})")
            result["runs"].append(bench.run(r))
        result["stored_bytes"] = result["runs"][0]["stored_bytes"]
        result["loadavg_end"] = macro.loadavg()
        # The measurements first, so that a report that fails loses nothing (--report-only).
        with open(os.path.join(args.out_dir, "compare.json"), "w") as f:
            json.dump(result, f, indent=1)
        report(result, args.out_dir, args.update_docs)
    finally:
        net.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
