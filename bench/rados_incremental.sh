#!/bin/bash
# Incremental sync into a RADOS pool against volume size: v2 brings the same new bytes to a 1 GiB
# and a 4 GiB root volume (same used share), and the sync of v2 (the pool holds v1) is timed 3
# times each. docs/BENCHMARKS.md, "Incremental sync against volume size".
#
#   bash bench/rados_incremental.sh [BUILD_DIR]      # default: build; ~1 min, 10 GB in /var/tmp
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$root/build}" && pwd)
CF=$B/tools/chunkferry
W=$(mktemp -d /var/tmp/cf-incr.XXXXXX)
trap '"$root/tools/ceph_cluster.sh" stop "$W/ceph" >/dev/null 2>&1; rm -rf "$W"' EXIT
"$root/tools/ceph_cluster.sh" start $W/ceph >/dev/null
C=$W/ceph/ceph.conf
for spec in "1G 12 6" "4G 3 1.5"; do
  set -- $spec; size=$1; rw=$2; ap=$3
  $B/bench/vmgen/make_vm_group --out $W/img$size --root-size $size --versions 2 --seed 7 --used-percent 9 --rewrite-percent $rw --append-percent $ap >/dev/null
  src=$W/src$size; $CF store init --store $src --quiet >/dev/null
  for v in v1 v2; do
    g=$(python3 -c "import hashlib;print(hashlib.md5(b'$size$v').hexdigest())")
    $CF import --store $src --image $W/img$size/$v/root.img --group $g --volume 00000000000000000000000000000001 --vm 00000000000000000000000000000002 --quiet >/dev/null
  done
  for run in 1 2 3; do
    pool=rados:chunkferry/incr$size$run
    $CF store init --store $pool --ceph-conf $C --quiet >/dev/null
    g1=$(python3 -c "import hashlib;print(hashlib.md5(b'${size}v1').hexdigest())")
    g2=$(python3 -c "import hashlib;print(hashlib.md5(b'${size}v2').hexdigest())")
    $CF sync --from $src --to $pool --group $g1 --ceph-conf $C --quiet >/dev/null
    /usr/bin/time -f "$size run$run wall %e s cpu %U+%S" $CF sync --from $src --to $pool --group $g2 --ceph-conf $C --json --quiet 2>&1 | python3 -c "
import sys,json; t=sys.stdin.read(); i=t.rindex('}'); j=json.loads(t[:i+1]); print(t[i+1:].strip(), 'sent', j['bytesSent'], 'referenced', j['chunksReferenced'], 'queried', j['chunksQueried'], 'engine s %.2f' % j['seconds'])"
  done
done
