#!/usr/bin/env python3
"""The fault campaign: real syncs between real processes on 127.0.0.1, with a fault injected at a
random point of each trial, chosen by a printed seed.

Each trial pushes a VM backup group (a full one, or an incremental one whose base is on the
destination) from a local store to a store daemon (`chunkferry serve`), through a loopback proxy
when the fault lives on the wire, and injects one fault:

  kill_client      kill -9 of the `sync` process
  kill_daemon      kill -9 of the destination daemon
  kill_source      kill -9 of the source daemon during a pull (`sync --from tcp://...` into a
                   local store)
  kill_api         kill -9 of the API daemon (`chunkferry api`) while its job pushes the group
  cut              the proxy cuts the connection after a random number of bytes
  stall            the proxy stops forwarding; the client gives up by itself (--io-timeout)
  flip_wire        the proxy flips one byte of what the client sends
  full_disk        the daemon's file size limit drops below its packs (RLIMIT_FSIZE: EFBIG)
  flip_source      one byte of a source pack's record payload is flipped before the sync
  crash_at_commit  the daemon kills itself (SIGKILL) right after a commit step, chosen at random:
                   the flush (chunks durable, no manifest yet), the first or the second manifest
                   (manifests, no group yet) or the group (published, not acknowledged);
                   CHUNKFERRY_SERVE_CRASH_AT of `chunkferry serve`

After every trial, with the fault removed: `verify` of the destination passes; every group it
lists is complete and every volume restores byte for byte (no incomplete group is visible); the
same sync run again succeeds (through the same daemon when it survived: it must keep serving; for
kill_api, through a new API daemon) and restores byte for byte. A fault on the source is reported as damage, never committed. Any
violation stops the campaign with the seed and the trial to reproduce it.

  campaign.py --cli build/tools/chunkferry --trials 30 [--seed N] [--workdir DIR] [--json OUT]
"""

import argparse
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1 << 20
KINDS = ["kill_client", "kill_daemon", "kill_source", "kill_api", "cut", "stall", "flip_wire",
         "full_disk", "flip_source", "crash_at_commit"]
CRASH_STEPS = ["flush", "manifest:1", "manifest:2", "group"]
# How long a stalled client waits for progress before it gives up (sync --io-timeout).
STALL_TIMEOUT_S = 1


class Failure(Exception):
    pass


def run(cli, args, check=True, timeout=120):
    p = subprocess.run([cli] + args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise Failure("chunkferry %s exited %d\nstdout: %s\nstderr: %s" %
                      (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


class Proxy:
    """A loopback TCP proxy to `target` that can cut, stall, or flip one byte client → server."""

    def __init__(self, target_port, mode=None, after=0):
        self.target_port = target_port
        self.mode = mode  # None, "cut", "stall", "flip"
        self.after = after  # client→server bytes before the fault
        self.sent = 0
        self.fired = False
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.sockets = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream and self.mode:
                    with self.lock:
                        start = self.sent
                        self.sent += len(data)
                        hit = not self.fired and self.sent > self.after
                        if hit:
                            self.fired = True
                    if hit:
                        if self.mode == "cut":
                            self.shutdown()
                            return
                        if self.mode == "stall":
                            while not self.closed:
                                time.sleep(0.05)
                            return
                        if self.mode == "flip":
                            i = max(0, self.after - start)
                            data = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def shutdown(self):
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.shutdown()
        self.listener.close()


class Daemon:
    """`chunkferry serve` of `store` (or, with `args`, another daemon command that takes
    --listen and --ready-file), on a free port of 127.0.0.1."""

    def __init__(self, cli, store, workdir, env=None, args=None, name="daemon"):
        self.ready = os.path.join(workdir, name + ".ready")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.log = open(os.path.join(workdir, name + ".log"), "a")
        args = args or ["serve", "--store", store]
        self.proc = subprocess.Popen([cli] + args + ["--listen", "127.0.0.1:0",
                                                     "--ready-file", self.ready],
                                     stdout=self.log, stderr=self.log,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(self.ready) and open(self.ready).read().strip():
                self.port = int(open(self.ready).read().strip().rsplit(":", 1)[1])
                return
            if self.proc.poll() is not None:
                raise Failure("the %s exited at start (see %s.log)" % (name, name))
            time.sleep(0.02)
        raise Failure("the %s did not start" % name)

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Campaign:
    def __init__(self, cli, workdir, rng):
        self.cli = cli
        self.dir = workdir
        self.rng = rng
        self.src = os.path.join(workdir, "src")
        self.dst = os.path.join(workdir, "dst")
        self.key = os.path.join(self.dst, "auth.key")
        self.images = {}  # backup uuid → image path
        self.groups = {}  # group uuid → [backup uuids]
        self.outcomes = {}
        self.on_dst = set()  # groups the destination held at the last check
        # Seconds that recent unfaulted syncs took, by how they ran ("push", "pull", "api"):
        # faults are timed within such a span, so that most land while a sync runs.
        self.durations = {}
        self.wire_bytes = []  # bytes recent unfaulted syncs sent through the proxy
        # The platform's names for the two stores and a session, for the API daemon.
        self.src_bs = "%032x" % rng.getrandbits(128)
        self.dst_bs = "%032x" % rng.getrandbits(128)
        self.session = "%032x" % rng.getrandbits(128)

    def setup(self):
        for s in (self.src, self.dst):
            run(self.cli, ["store", "init", "--store", s, "--quiet"])
        vm = "%032x" % self.rng.getrandbits(128)
        volumes = ["%032x" % self.rng.getrandbits(128) for _ in range(2)]
        base = {}
        for version in range(3):
            group = "%032x" % self.rng.getrandbits(128)
            self.groups[group] = []
            for n, volume in enumerate(volumes):
                if version == 0:
                    size = (3 if n == 0 else 2) * MIB + self.rng.randrange(4096)
                    data = bytearray(self.rng.randbytes(size))
                    # Some zero runs and some repeated blocks (holes and dedupe).
                    for _ in range(4):
                        at = self.rng.randrange(0, size - 65536)
                        data[at:at + 65536] = bytes(65536)
                    base[n] = data
                else:
                    data = base[n]
                    for _ in range(40):  # a later backup: scattered 4 KiB rewrites
                        at = self.rng.randrange(0, len(data) // 4096) * 4096
                        data[at:at + 4096] = self.rng.randbytes(4096)
                img = os.path.join(self.dir, "img-%d-%d" % (version, n))
                with open(img, "wb") as f:
                    f.write(data)
                out = run(self.cli, ["import", "--store", self.src, "--image", img, "--group",
                                     group, "--volume", volume, "--type",
                                     "Root" if n == 0 else "Data", "--vm", vm, "--json",
                                     "--quiet"]).stdout
                uuid = json.loads(out)["uuid"]
                self.images[uuid] = img
                self.groups[group].append(uuid)
        self.order = list(self.groups)  # oldest first: later ones sync against a base

    def sync_args(self, port, group):
        return ["sync", "--from", self.src, "--to", "tcp://127.0.0.1:%d" % port, "--group", group,
                "--key-file", self.key, "--quiet"]

    def check_destination(self, trial):
        """verify passes; every listed group is whole and restores byte for byte."""
        v = run(self.cli, ["verify", "--store", self.dst, "--json"], check=False)
        report = json.loads(v.stdout) if v.stdout.strip() else {}
        if v.returncode != 0 or not report.get("ok"):
            raise Failure("trial %d: verify of the destination failed:\n%s%s" %
                          (trial, v.stdout, v.stderr))
        listed = json.loads(run(self.cli, ["ls", "--store", self.dst, "--json"]).stdout)
        for g in listed:
            want = self.groups.get(g["group"])
            have = [v["uuid"] for v in g["volumes"]]
            if want is None or sorted(have) != sorted(want):
                raise Failure("trial %d: group %s is visible with volumes %s, expected %s" %
                              (trial, g["group"], have, want))
            for uuid in have:
                self.check_restore(trial, uuid)
        self.on_dst = {g["group"] for g in listed}
        return [g["group"] for g in listed]

    def check_restore(self, trial, uuid):
        out = os.path.join(self.dir, "restored")
        run(self.cli, ["restore", "--store", self.dst, "--backup", uuid, "--output", out,
                       "--quiet", "--force"])
        with open(out, "rb") as a, open(self.images[uuid], "rb") as b:
            if a.read() != b.read():
                raise Failure("trial %d: volume backup %s restores different bytes" %
                              (trial, uuid))
        os.unlink(out)

    def flip_source_record(self):
        """Flips one payload byte in the middle of a source pack; returns (path, offset)."""
        packs = sorted(os.listdir(os.path.join(self.src, "packs")))
        path = os.path.join(self.src, "packs", self.rng.choice(packs))
        size = os.path.getsize(path)
        offset = self.rng.randrange(size // 4, size - 64)
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0x08]))
        return path, offset

    def pick_group(self):
        """A group the destination lacks (the oldest first is as likely as any: later ones then
        sync against a base), so that the sync has work to be cut short."""
        missing = [g for g in self.order if g not in self.on_dst]
        return self.rng.choice(missing or self.order)

    def fault_delay(self, how):
        """When to strike: a random point within the time a recent unfaulted sync took."""
        recent = self.durations.get(how) or [0.1]
        return self.rng.uniform(0.0, 1.2 * self.rng.choice(recent))

    def took(self, how, seconds):
        self.durations.setdefault(how, []).append(seconds)
        del self.durations[how][:-16]

    def timed_run(self, how, args):
        t = time.time()
        run(self.cli, args)
        self.took(how, time.time() - t)

    def trial(self, n, kind):
        group = self.pick_group()
        if kind == "kill_source":
            outcome = self.trial_kill_source(n, group)
        elif kind == "kill_api":
            outcome = self.trial_kill_api(n, group)
        else:
            outcome = self.trial_push(n, kind, group)
        self.outcomes.setdefault(kind, {}).setdefault(outcome, 0)
        self.outcomes[kind][outcome] += 1
        return outcome

    def wait_then_kill(self, client, victim, seconds):
        """Waits up to `seconds` while the client runs, then kills `victim` if the client still
        runs; returns whether it did."""
        deadline = time.time() + seconds
        while time.time() < deadline and client.poll() is None:
            time.sleep(0.005)
        if victim.poll() is None and client.poll() is None:
            victim.send_signal(signal.SIGKILL)
            return True
        return False

    def finish(self, n, kind, client, timeout=120):
        """The client's exit code and stderr; a client that hangs fails the campaign."""
        try:
            _, err = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            client.kill()
            client.communicate()
            raise Failure("trial %d (%s): the sync hung for %d s" % (n, kind, timeout))
        return client.returncode, err

    def converge(self, n, daemon, group):
        """The same sync with the fault gone, through `daemon` when it survived (it must keep
        serving after a write error or a broken connection); the group is then whole."""
        try:
            self.check_destination(n)
            if not daemon.alive():
                daemon.stop()
                daemon = Daemon(self.cli, self.dst, self.dir)
            self.timed_run("push", self.sync_args(daemon.port, group))
            visible = self.check_destination(n)
        finally:
            daemon.stop()
        if group not in visible:
            raise Failure("trial %d: group %s is not visible after a successful sync" % (n, group))

    def trial_push(self, n, kind, group):
        if kind == "flip_source" and self.rng.random() < 0.8:
            # From an empty destination every chunk of the group travels, so a flip in any of
            # them is on the sync's path.
            self.reset_destination()
        env = None
        crash_step = None
        if kind == "crash_at_commit":
            crash_step = self.rng.choice(CRASH_STEPS)
            env = {"CHUNKFERRY_SERVE_CRASH_AT": crash_step}
        daemon = Daemon(self.cli, self.dst, self.dir, env=env)
        proxy = None
        port = daemon.port
        outcome = None
        flipped = None
        injected = kind in ("full_disk", "flip_source")
        try:
            if kind in ("cut", "stall", "flip_wire"):
                mode = {"cut": "cut", "stall": "stall", "flip_wire": "flip"}[kind]
                # Somewhere within what a recent sync sent (at least past the handshake).
                span = self.rng.choice(self.wire_bytes or [512 << 10])
                proxy = Proxy(daemon.port, mode, self.rng.randrange(200, max(span, 201)))
                port = proxy.port
            if kind == "full_disk":
                limit = self.rng.randrange(64 << 10, 4 * MIB)
                resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE,
                                 (limit, resource.RLIM_INFINITY))
            if kind == "flip_source":
                flipped = self.flip_source_record()
            args = self.sync_args(port, group)
            if kind == "stall":
                args += ["--io-timeout", str(STALL_TIMEOUT_S)]
            started = time.time()
            client = subprocess.Popen([self.cli] + args, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            gave_up = False
            if kind in ("kill_client", "kill_daemon"):
                victim = daemon.proc if kind == "kill_daemon" else client
                injected = self.wait_then_kill(client, victim, self.fault_delay("push"))
            elif kind == "stall":
                # The client must notice by itself. Only a stall while it waits for the flush
                # (the daemon is silent while it fsyncs: a longer limit) or for the handshake
                # (the connect timeout) outlasts this; then the operator gives up.
                gave_up = self.wait_then_kill(client, client, STALL_TIMEOUT_S + 4)
            rc, err = self.finish(n, kind, client)
            ok = rc == 0
            if not injected and kind in ("kill_client", "kill_daemon"):
                self.took("push", time.time() - started)
            if proxy:
                injected = proxy.fired
                if not injected:
                    self.wire_bytes = (self.wire_bytes + [proxy.sent])[-16:]
            if kind == "kill_client":
                injected = rc == -signal.SIGKILL
            if crash_step:
                injected = not daemon.alive()
                if injected and ok:
                    raise Failure("trial %d: the daemon crashed at %s, yet the sync exited 0" %
                                  (n, crash_step))
            if kind == "flip_source" and ok:
                # The flip may hit bytes this group does not use, or chunks the destination
                # has; then nothing damaged travelled. The check below proves it either way.
                outcome = "sync ok (damage not on its path)"
            elif kind == "flip_source":
                if "checksum" not in err and "damaged" not in err and "mismatch" not in err:
                    raise Failure("trial %d: source damage reported as something else:\n%s" %
                                  (n, err))
                outcome = "damage reported"
            elif not injected:
                outcome = "not injected (sync was done)"
            elif kind == "stall" and gave_up:
                outcome = "stalled in flush or handshake, killed"
            elif kind == "stall":
                if ok or "no progress" not in err:
                    raise Failure("trial %d: a stalled sync ended without a timeout:\n%s" %
                                  (n, err))
                outcome = "timed out by itself"
            elif crash_step:
                outcome = "crashed after %s, sync failed cleanly" % crash_step
            elif kind == "full_disk" and ok:
                outcome = "limit above what it wrote, sync ok"
            else:
                outcome = "injected, sync ok" if ok else "injected, sync failed cleanly"
        finally:
            if proxy:
                proxy.close()
        if kind == "full_disk" and daemon.alive():
            resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if kind in ("full_disk", "flip_wire", "cut", "stall", "kill_client", "flip_source") and \
                not daemon.alive():
            raise Failure("trial %d (%s): the daemon died" % (n, kind))
        if flipped:
            path, offset = flipped  # the source is mended before the checks
            with open(path, "r+b") as f:
                f.seek(offset)
                b = f.read(1)
                f.seek(offset)
                f.write(bytes([b[0] ^ 0x08]))
        self.converge(n, daemon, group)
        return outcome

    def trial_kill_source(self, n, group):
        """A pull from a source daemon into the local destination; the source dies mid-way."""
        source = Daemon(self.cli, self.src, self.dir, name="source")
        try:
            def pull_args(port):
                return ["sync", "--from", "tcp://127.0.0.1:%d" % port, "--to", self.dst,
                        "--group", group, "--key-file", os.path.join(self.src, "auth.key"),
                        "--quiet"]
            started = time.time()
            client = subprocess.Popen([self.cli] + pull_args(source.port),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            injected = self.wait_then_kill(client, source.proc, self.fault_delay("pull"))
            rc, _ = self.finish(n, "kill_source", client)
            if not injected:
                self.took("pull", time.time() - started)
                outcome = "not injected (sync was done)"
            else:
                outcome = "injected, sync ok" if rc == 0 else "injected, sync failed cleanly"
            self.check_destination(n)
            if not source.alive():
                source.stop()
                source = Daemon(self.cli, self.src, self.dir, name="source")
            self.timed_run("pull", pull_args(source.port))
            if group not in self.check_destination(n):
                raise Failure("trial %d: group %s is not visible after a successful pull" %
                              (n, group))
        finally:
            source.stop()
        return outcome

    def api_config(self, daemon_port):
        """A registry for `chunkferry api`: the source directory, the destination daemon."""
        path = os.path.join(self.dir, "registry.json")
        with open(path, "w") as f:
            json.dump({"backupStorages": [
                {"uuid": self.src_bs, "name": "local", "store": self.src},
                {"uuid": self.dst_bs, "name": "remote",
                 "store": "tcp://127.0.0.1:%d" % daemon_port, "keyFile": self.key}],
                "sessions": [self.session]}, f)
        os.chmod(path, 0o600)  # it lists a session: refused when others may read it
        return path

    def api_put(self, port, group, job=None):
        """PUT of SyncVmBackupFromImageStoreBackupStorage; (status, parsed body)."""
        headers = {"Authorization": "OAuth " + self.session,
                   "Content-Type": "application/json;charset=UTF-8"}
        if job:
            headers["X-Job-UUID"] = job
        body = json.dumps({"syncVmBackupFromImageStoreBackupStorage": {
            "srcBackupStorageUuid": self.src_bs, "dstBackupStorageUuid": self.dst_bs}})
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            c.request("PUT", "/zstack/v1/vm-backups/%s/actions" % group, body, headers)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            c.close()

    def api_job_status(self, port, job):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", "/zstack/v1/api-jobs/%s" % job)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def trial_kill_api(self, n, group):
        """The API daemon runs the sync as a job, pushing to the destination daemon, and dies."""
        daemon = Daemon(self.cli, self.dst, self.dir)
        config = self.api_config(daemon.port)
        api = Daemon(self.cli, None, self.dir, args=["api", "--config", config], name="api")
        try:
            job = "%032x" % self.rng.getrandbits(128)
            status, body = self.api_put(api.port, group, job)
            if status != 202:
                raise Failure("trial %d: the job PUT answered %d %s" % (n, status, body))
            time.sleep(self.fault_delay("api"))
            running = self.api_job_status(api.port, job) == 202
            api.kill()
            outcome = "killed mid-job" if running else "not injected (job was done)"
            if not daemon.alive():
                raise Failure("trial %d (kill_api): the destination daemon died" % n)
            self.check_destination(n)
            # A new API daemon runs the same sync to the end, synchronously.
            api.stop()
            api = Daemon(self.cli, None, self.dir, args=["api", "--config", config], name="api")
            t = time.time()
            status, body = self.api_put(api.port, group)
            self.took("api", time.time() - t)
            if status != 200 or len(body.get("inventories", [])) != len(self.groups[group]):
                raise Failure("trial %d: the rerun through the API answered %d %s" %
                              (n, status, body))
        finally:
            api.stop()
        self.converge(n, daemon, group)
        return outcome

    def maybe_reset_destination(self):
        """Now and then start from an empty destination, so full syncs happen too; mostly
        once it holds every group (then a sync has nothing left to move)."""
        full = all(g in self.on_dst for g in self.order)
        if self.rng.random() < (0.7 if full else 0.15):
            self.reset_destination()

    def reset_destination(self):
        self.on_dst = set()
        shutil.rmtree(self.dst)
        run(self.cli, ["store", "init", "--store", self.dst, "--quiet"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--kinds", default=",".join(KINDS))
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    print("fault campaign: seed %d, %d trials (rerun: --seed %d)" % (seed, a.trials, seed),
          flush=True)
    rng = random.Random(seed)
    kinds = a.kinds.split(",")
    workdir = a.workdir or tempfile.mkdtemp(prefix="cf-faults-")
    os.makedirs(workdir, exist_ok=True)
    c = Campaign(os.path.abspath(a.cli), workdir, rng)
    started = time.time()
    try:
        c.setup()
        for n in range(1, a.trials + 1):
            kind = kinds[(n - 1) % len(kinds)] if n <= len(kinds) else rng.choice(kinds)
            t = time.time()
            outcome = c.trial(n, kind)
            print("trial %3d %-15s %-34s %.2f s" % (n, kind, outcome, time.time() - t),
                  flush=True)
            c.maybe_reset_destination()
    except Failure as e:
        print("FAILED (seed %d, workdir %s): %s" % (seed, workdir, e), flush=True)
        return 1
    summary = {"seed": seed, "trials": a.trials, "seconds": round(time.time() - started, 1),
               "outcomes": c.outcomes, "lost_or_corrupted": 0}
    print(json.dumps(summary, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
    if not a.workdir:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
