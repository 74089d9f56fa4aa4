#!/usr/bin/python3
"""Plots of a bench/compare.py result: python3 bench/plot_compare.py compare.json OUT_DIR

Writes three PNGs into OUT_DIR and prints one "FILE<TAB>TITLE" line per plot:
  compare-throughput.png  MB/s of images per phase, every tool (log scale)
  compare-links.png       chunkferry's syncs per link against the link's own limit
  compare-time.png        where each tool's time went, phase by phase, and chunkferry's syncs
                          split into connect, plan, transfer and commit
Needs python3-matplotlib (Debian's; tools/dev.sh bench installs it).
"""

import json
import os
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import phase_title, MB  # noqa: E402

COLORS = {"chunkferry": "#d62728", "restic": "#1f77b4", "borg": "#2ca02c", "casync": "#9467bd",
          "zstd": "#8c564b", "cp": "#7f7f7f", "rsync-images": "#ff7f0e",
          "rsync-images-z": "#ffbb78", "rsync-images-delta": "#ff7f0e",
          "rsync-images-delta-z": "#ffbb78", "rsync-casync": "#c5b0d5"}


def throughput(summary, out):
    table = summary["table"]
    keys = list(table)
    cols = 3
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        tools = sorted(table[key].items(), key=lambda kv: kv[1]["MBps"] or 0)
        names = [t for t, _ in tools]
        vals = [d["MBps"] or 0 for _, d in tools]
        ax.barh(names, vals, color=[COLORS.get(t, "#aaaaaa") for t in names])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(phase_title(key), fontsize=9)
        ax.tick_params(labelsize=8)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=7)
        ax.set_xlabel("MB/s of images (log)", fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def links(result, summary, out):
    table, stored = summary["table"], result["stored_bytes"]
    rates = {"10gbit": 10e9, "1gbit": 1e9}
    present = [l for l in rates if f"full@{l}" in table]
    if not present:
        return False
    fig, ax = plt.subplots(figsize=(9, 3.5))
    labels, measured, ideal, plan = [], [], [], []
    for link in present:
        for phase, must in (("full", stored["v1"] + stored["v2"]), ("incremental", stored["v2"])):
            d = table[f"{phase}@{link}"]["chunkferry"]
            labels.append(f"{phase}\n{link}")
            measured.append(d["wall_s"])
            ideal.append(must / (rates[link] / 8))
            plan.append(d.get("plan_s", 0) if phase == "incremental" else 0)
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], measured, 0.4, label="chunkferry sync, wall", color="#d62728")
    ax.bar([i + 0.2 for i in x], ideal, 0.4, label="stored bytes ÷ link rate", color="#bbbbbb")
    ax.bar([i + 0.2 for i in x], plan, 0.4, bottom=ideal, label="+ planning (incremental)",
           color="#888888")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("chunkferry over shaped links, against the links' own limit", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def time_split(summary, out):
    table = summary["table"]
    phases = [k for k in ("import_v1", "import_v2", "full@loopback", "incremental@loopback",
                          "restore", "verify") if k in table]
    # One row per way a user would keep and move the backups; casync's replication is an rsync
    # of its store, and raw images move with rsync (whole, then the delta).
    rows_of = {"chunkferry": {}, "restic": {}, "borg": {}, "zstd": {}, "cp": {},
               "casync + rsync": {"full@loopback": "rsync-casync",
                                  "incremental@loopback": "rsync-casync", "*": "casync"},
               "rsync of images": {"full@loopback": "rsync-images",
                                   "incremental@loopback": "rsync-images-delta"}}
    names = list(rows_of)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 4.6))
    left = [0.0] * len(names)
    cmap = plt.get_cmap("tab10")
    for n, key in enumerate(phases):
        vals = []
        for name in names:
            alias = rows_of[name]
            tool = alias.get(key, alias.get("*", name if not alias else None))
            d = table[key].get(tool) if tool else None
            vals.append(d["wall_s"] if d else 0)
        ax1.barh(names, vals, left=left, label=phase_title(key), color=cmap(n))
        left = [a + b for a, b in zip(left, vals)]
    ax1.set_xlabel("seconds, stacked by phase (a tool without a phase adds nothing)",
                   fontsize=8)
    ax1.set_title("where each tool's time went", fontsize=10)
    ax1.legend(fontsize=7, loc="lower right")
    parts = ("connect", "plan", "transfer", "commit")
    rows = [k for k in table if k.startswith(("full@", "incremental@"))
            and "plan_s" in table[k].get("chunkferry", {})]
    left = [0.0] * len(rows)
    for n, part in enumerate(parts):
        vals = []
        for k in rows:
            d = table[k]["chunkferry"]
            inner = d["plan_s"] + d["transfer_s"] + d["commit_s"]
            # A full sync is two processes; their connect is what the wall adds to the copy.
            vals.append({"connect": max(0.0, d["wall_s"] - inner), "plan": d["plan_s"],
                         "transfer": d["transfer_s"], "commit": d["commit_s"]}[part])
        ax2.barh([phase_title(k) for k in rows], vals, left=left, label=part, color=cmap(n))
        left = [a + b for a, b in zip(left, vals)]
    ax2.set_xlabel("seconds", fontsize=8)
    ax2.tick_params(labelsize=7)
    ax2.set_title("chunkferry's syncs: start-up and connect, plan, transfer, commit", fontsize=10)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_compare.py compare.json OUT_DIR")
    with open(sys.argv[1]) as f:
        result = json.load(f)
    out_dir = sys.argv[2]
    summary = result["summary"]
    throughput(summary, os.path.join(out_dir, "compare-throughput.png"))
    print("compare-throughput.png\tThroughput per phase, every tool")
    if links(result, summary, os.path.join(out_dir, "compare-links.png")):
        print("compare-links.png\tchunkferry over shaped links against the link rate")
    time_split(summary, os.path.join(out_dir, "compare-time.png"))
    print("compare-time.png\tWhere the time went")


if __name__ == "__main__":
    main()
