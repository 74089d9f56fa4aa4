#!/usr/bin/env python3
"""What the control module costs: one group synced by the HTTP API (job mode) vs `chunkferry sync`.

    python3 bench/api_bench.py --build build --root-size 2G --data-size 1G --runs 3
    python3 bench/api_bench.py --build build --quick        # smoke test: 256M + 128M, 1 run

The group (one version: a Root and a Data volume, bench/vmgen/make_vm_group) is imported once
into a local source store. Then, each run, two empty destination stores are each served by a
`chunkferry serve` daemon on 127.0.0.1, and `chunkferry api` is started (untimed) with a registry
naming the source store and the second daemon. Two timed steps follow, alternated so that each
goes first in turn, the page cache dropped before each when allowed:
  cli   chunkferry sync --from SRC --to tcp://DAEMON1 --group G --key-file DST1/auth.key
        (process wall clock, start to reap; peak RSS from wait4)
  api   PUT /zstack/v1/vm-backups/G/actions with X-Job-UUID (a job, as the platform's Java SDK
        sends it), 202 expected, then GET /zstack/v1/api-jobs/JOB every 20 ms until it is not
        202; 200 expected with one inventory per volume, each with two backupStorageRefs
        (source, destination). Timed by time.monotonic around the PUT and all the polls, so it
        includes up to one poll interval (20 ms) of polling slack.
Both sides use 2 TCP connections and full verification. Reported: medians, ratio api / cli
(overhead: lower is better, 1.0 = none), peak RSS of the API daemon (VmHWM at its end) next to
the CLI client's; every run goes to --out as JSON.

Python 3.11 standard library only; shares macro.py's runner.
"""

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import macro  # noqa: E402  (same directory)

MIB = 1 << 20
POLL_S = 0.020
SRC_BS = macro.uuid_of("api-bench-bs-src")
DST_BS = macro.uuid_of("api-bench-bs-dst")


def http_call(addr, method, path, headers, body=None):
    """One request on its own connection; returns (status, parsed JSON body or text)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode(errors="replace")
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data) if data else None
    except json.JSONDecodeError:
        return resp.status, data


def api_sync(runner, api, session, group, n_volumes):
    """The timed API path: PUT as a job, then poll until done. Raises on any unexpected answer."""
    job = secrets.token_hex(16)
    headers = {"Authorization": f"OAuth {session}", "X-Job-UUID": job, "X-JSON-Schema": "true",
               "Content-Type": "application/json;charset=UTF-8"}
    body = json.dumps({"syncVmBackupFromImageStoreBackupStorage": {
        "srcBackupStorageUuid": SRC_BS, "dstBackupStorageUuid": DST_BS}}).encode()
    if runner.cold:  # what Runner.run does before every timed process
        runner._drop()
    cpu0 = macro.proc_cpu_seconds(api.pid)
    t0 = time.monotonic()
    status, answer = http_call(api.addr, "PUT", f"/zstack/v1/vm-backups/{group}/actions",
                               headers, body)
    accepted = time.monotonic() - t0
    if status != 202 or not isinstance(answer, dict) or not str(answer.get("location", "")
                                                                ).endswith(f"/api-jobs/{job}"):
        raise RuntimeError(f"PUT answered {status}, expected 202 with the job's location: {answer}")
    deadline = t0 + min(answer.get("apiTimeout", 0) / 1000 or 6 * 3600, 6 * 3600)
    polls = 0
    poll_headers = {"Authorization": f"OAuth {session}", "X-JSON-Schema": "true"}
    while True:
        time.sleep(POLL_S)
        status, answer = http_call(api.addr, "GET", f"/zstack/v1/api-jobs/{job}", poll_headers)
        polls += 1
        if status != 202:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job} still running after its apiTimeout")
    seconds = time.monotonic() - t0
    cpu = macro.proc_cpu_seconds(api.pid) - cpu0
    if status != 200 or not isinstance(answer, dict):
        raise RuntimeError(f"job poll answered {status}, expected 200: {answer}")
    inv = answer.get("inventories")
    if not isinstance(inv, list) or len(inv) != n_volumes:
        raise RuntimeError(f"expected {n_volumes} inventories, got: {answer}")
    for i, v in enumerate(inv):
        refs = v.get("backupStorageRefs") if isinstance(v, dict) else None
        if not isinstance(refs, list) or len(refs) != 2 or \
                [r.get("backupStorageUuid") for r in refs] != [SRC_BS, DST_BS]:
            raise RuntimeError(f"inventories[{i}]: expected 2 backupStorageRefs "
                               f"(source, destination): {v}")
    if not isinstance(answer.get("schema"), dict):
        raise RuntimeError(f"X-JSON-Schema: true, but no schema map: {answer}")
    return {"seconds": seconds, "accept_s": accepted, "polls": polls, "job": job,
            "api_cpu_s": cpu, "inventories": len(inv),
            "volume_types": [v.get("type") for v in inv]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    macro.add_common_args(ap, "api")
    args = macro.parse_common_args(ap)
    build = os.path.abspath(args.build)
    cf = os.path.join(build, "tools", "chunkferry")
    gen = os.path.join(build, "bench", "vmgen", "make_vm_group")
    for tool in (cf, gen):
        if not os.access(tool, os.X_OK):
            sys.exit(f"api_bench.py: {tool} not found: build the project first")
    work = macro.make_work_dir(args.work, "api", "api_bench.py")
    runner = macro.Runner(want_cold=not args.warm)
    common = ["--json", "--quiet", "--io", args.io]
    result = macro.result_header(
        runner, build=build,
        config={"root_size": args.root_size, "data_size": args.data_size, "runs": args.runs,
                "seed": args.seed, "io": args.io, "connections": 2, "verify": "full",
                "poll_s": POLL_S})
    macro.log(f"work dir {work}; {runner.cache_mode}; load average {result['loadavg_start']}")

    macro.stop_on_signals()
    try:
        images = os.path.join(work, "images")
        runner.run([gen, "--out", images, "--root-size", args.root_size, "--data-size",
                    args.data_size, "--versions", "1", "--seed", str(args.seed)], timed=False)
        vols = [("root.img", "Root"), ("data1.img", "Data")]
        logical = sum(os.stat(os.path.join(images, "v1", f)).st_size for f, _ in vols)
        group = macro.uuid_of("api-group-v1")
        src = os.path.join(work, "src")
        runner.run([cf, "store", "init", "--store", src, "--quiet"], timed=False)
        stored = 0
        for f, vtype in vols:
            r = macro.run_json(runner, [cf, "import", "--store", src, "--image",
                                        os.path.join(images, "v1", f), "--group", group,
                                        "--vm", macro.VM_UUID, "--volume",
                                        macro.uuid_of(f"vol-{f}"), "--type", vtype] + common)
            stored += r["json"]["storedBytes"]
        result["logical_bytes"], result["stored_bytes"] = logical, stored
        macro.log(f"source store: {logical / MIB:.0f} MiB of image, {stored} B stored")

        for r in range(args.runs):
            macro.log(f"run {r + 1}/{args.runs} (load average {macro.loadavg()})")
            rd = os.path.join(work, f"run{r}")
            os.makedirs(rd)
            dst1, dst2 = os.path.join(rd, "dst1"), os.path.join(rd, "dst2")
            for d in (dst1, dst2):
                runner.run([cf, "store", "init", "--store", d, "--quiet"], timed=False)
            run = {"run": r, "loadavg": macro.loadavg()}
            served = []
            try:
                d1 = macro.Served([cf, "serve", "--store", dst1, "--io", args.io], rd, "serve1")
                served.append(d1)
                d2 = macro.Served([cf, "serve", "--store", dst2, "--io", args.io], rd, "serve2")
                served.append(d2)
                session = secrets.token_hex(16)
                cfg = os.path.join(rd, "registry.json")
                with open(cfg, "w") as f:
                    json.dump({"backupStorages": [
                        {"uuid": SRC_BS, "name": "src", "store": src},
                        {"uuid": DST_BS, "name": "dst2", "store": "tcp://" + d2.addr,
                         "keyFile": os.path.join(dst2, "auth.key"), "connections": 2}],
                        "sessions": [session], "verify": "full"}, f, indent=1)
                os.chmod(cfg, 0o600)  # it lists a session: refused when others may read it
                api = macro.Served([cf, "api", "--config", cfg, "--io", args.io], rd, "api")
                served.append(api)
                run["api_rss_idle_kib"] = macro.proc_status_kib(api.pid, "VmRSS")
                steps = macro.alternate(r, [
                    ("cli", lambda: macro.run_json(runner, [
                        cf, "sync", "--from", src, "--to", "tcp://" + d1.addr, "--group", group,
                        "--key-file", os.path.join(dst1, "auth.key"), "--connections", "2",
                        "--verify", "full"] + common)),
                    ("api", lambda: api_sync(runner, api, session, group, len(vols)))])
                run.update(steps)
                run["api_hwm_kib"] = api.stop()
                run["serve1_hwm_kib"] = d1.stop()
                run["serve2_hwm_kib"] = d2.stop()
            finally:
                for s in reversed(served):
                    s.stop()
            cli, a = run["cli"], run["api"]
            macro.log(f"  cli {cli['seconds']:.2f} s, api {a['seconds']:.2f} s "
                      f"(202 after {a['accept_s'] * 1000:.1f} ms, {a['polls']} polls); "
                      f"api/cli {a['seconds'] / cli['seconds']:.3f}; API daemon peak RSS "
                      f"{run['api_hwm_kib'] / 1024:.1f} MiB")
            result["runs"].append(run)
            if not args.keep:
                macro.discard_later(rd, work)

        runs = result["runs"]
        cli_s = [x["cli"]["seconds"] for x in runs]
        api_s = [x["api"]["seconds"] for x in runs]
        cli_med, api_med = statistics.median(cli_s), statistics.median(api_s)
        per_run = [a / c for c, a in zip(cli_s, api_s)]
        summary = {"cli_median_s": cli_med, "api_median_s": api_med, "cli_s": cli_s,
                   "api_s": api_s, "ratio_api_over_cli": api_med / cli_med,
                   "ratio_per_run": per_run,
                   "api_accept_median_ms": statistics.median(x["api"]["accept_s"] for x in runs) * 1000,
                   "cli_cpu_median_s": statistics.median(x["cli"]["user_s"] + x["cli"]["sys_s"]
                                                         for x in runs),
                   "api_cpu_median_s": statistics.median(x["api"]["api_cpu_s"] for x in runs),
                   "peak_rss_api_daemon_mib": max(x["api_hwm_kib"] for x in runs) / 1024,
                   "api_rss_idle_mib": max(x["api_rss_idle_kib"] for x in runs) / 1024,
                   "peak_rss_cli_mib": max(x["cli"]["maxrss_kib"] for x in runs) / 1024,
                   "peak_rss_serve_mib": max(max(x["serve1_hwm_kib"], x["serve2_hwm_kib"])
                                             for x in runs) / 1024}
        result["summary"] = summary
        result["loadavg_end"] = macro.loadavg()
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        s = summary
        print(f"control module (HTTP API, job mode) vs chunkferry sync, {runner.cache_mode}, "
              f"{args.runs} run(s), group {logical / MIB:.0f} MiB logical (root {args.root_size} "
              f"+ data {args.data_size}), revision {result['source_revision']}, load "
              f"{result['loadavg_start']} -> {result['loadavg_end']}")
        print(f"  {'path':44s} {'median s':>9} {'[min..max]':>14} {'CPU s':>6}")
        print(f"  {'cli: chunkferry sync to a serve daemon':44s} {cli_med:9.3f} "
              f"{f'[{min(cli_s):.2f}..{max(cli_s):.2f}]':>14} {s['cli_cpu_median_s']:6.2f}")
        print(f"  {'api: PUT (X-Job-UUID) + polls every 20 ms':44s} {api_med:9.3f} "
              f"{f'[{min(api_s):.2f}..{max(api_s):.2f}]':>14} {s['api_cpu_median_s']:6.2f}")
        print(f"  ratio api/cli {s['ratio_api_over_cli']:.3f} [{min(per_run):.3f}..{max(per_run):.3f}]"
              f" (overhead; lower is better, 1.0 = no overhead); 202 after "
              f"{s['api_accept_median_ms']:.1f} ms")
        print(f"  peak RSS: API daemon {s['peak_rss_api_daemon_mib']:.1f} MiB (idle "
              f"{s['api_rss_idle_mib']:.1f}), cli client {s['peak_rss_cli_mib']:.1f} MiB, "
              f"serve daemons {s['peak_rss_serve_mib']:.1f} MiB")
        macro.log(f"per-run data in {os.path.abspath(args.out)}")
    except BaseException as e:  # keep what was measured, and say what went wrong
        result["error"] = str(e) or type(e).__name__
        result["loadavg_end"] = macro.loadavg()
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        macro.log(f"failed; partial data in {os.path.abspath(args.out)}")
        raise
    finally:
        if args.keep:
            macro.log(f"kept the work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
