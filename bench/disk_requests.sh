#!/usr/bin/env bash
# Disk requests behind one store-to-store copy: runs `chunkferry copy` of GROUP from SRC into a
# fresh store, or `cp -r SRC` + an fsync of every file (the macro benchmark's yardstick), with a
# cold page cache, and prints the wall time and the /proc/diskstats deltas of DEVICE: read and
# write requests (and MB), and the time the device was busy. Needs root (drop_caches).
#
#   bench/disk_requests.sh [--device vda] SRC GROUP WORK BIN|cp ...
#
# Each BIN (a chunkferry binary) or `cp` runs once, in the order given, into WORK/<n>; nothing is
# deleted between runs (deleting GBs stalls the next fsync on a `discard` file system). Repeat
# the list to alternate, e.g. `... build/tools/chunkferry cp build/tools/chunkferry cp`.
set -euo pipefail
device=vda
if [[ ${1:-} == --device ]]; then device=$2; shift 2; fi
if [[ $# -lt 4 ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
src=$1 group=$2 work=$3
shift 3
mkdir -p "$work"
stat_dev() { awk -v d="$device" '$3==d {print $4, $6, $8, $10, $13}' /proc/diskstats; }
n=0
for bin in "$@"; do
  n=$((n + 1))
  dst=$work/$n
  [[ -e $dst ]] && { echo "$dst exists" >&2; exit 1; }
  if [[ $bin != cp ]]; then "$bin" store init --store "$dst" >/dev/null; fi
  sync
  echo 3 >/proc/sys/vm/drop_caches
  sleep 1
  before=$(stat_dev)
  t0=$(date +%s.%N)
  if [[ $bin == cp ]]; then
    cp -r "$src" "$dst" && find "$dst" -exec sync -- {} +
  else
    "$bin" copy --from "$src" --to "$dst" --group "$group" --quiet >/dev/null
  fi
  t1=$(date +%s.%N)
  after=$(stat_dev)
  python3 - "$bin" "$before" "$after" "$t0" "$t1" <<'PY'
import sys
name, a, b, t0, t1 = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), float(sys.argv[4]), float(sys.argv[5])
a, b = list(map(int, a)), list(map(int, b))
wall = t1 - t0
busy = (b[4] - a[4]) / 1000
print(f"{name}: wall {wall:.2f} s, reads {b[0]-a[0]} ({(b[1]-a[1])/2048:.0f} MiB), "
      f"writes {b[2]-a[2]} ({(b[3]-a[3])/2048:.0f} MiB), busy {busy:.2f} s ({100*busy/wall:.0f}%)")
PY
done
