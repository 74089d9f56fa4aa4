#!/usr/bin/env bash
# A throwaway one-node Ceph cluster on 127.0.0.1 for chunkferry's RADOS tests and benchmarks: one
# monitor and one BlueStore OSD on a sparse file, no manager, no systemd, everything (config,
# data, logs, sockets) under DIR. Needs ceph-mon, ceph-osd and ceph-common (tools/install-deps.sh).
#
#   tools/ceph_cluster.sh start DIR [--cephx] [--ec]   start; prints DIR/ceph.conf when writable
#   tools/ceph_cluster.sh start-osd DIR          start its stopped OSD again; returns once it is up
#   tools/ceph_cluster.sh stop DIR              stop both daemons and remove DIR
#
# The OSD's block is a sparse file of 10 GiB (CHUNKFERRY_CEPH_BLOCK_GB for more: a full OSD stops).
# The OSD's BlueStore cache is 64 MiB (tests); benchmarks set CHUNKFERRY_CEPH_CACHE_MB for more: a
# chunk index whose omap does not fit in it is read from disk, one random read per id looked up.
#
# --cephx turns authentication on: DIR/keyring then holds client.admin's key, and
# DIR/chunkferry.keyring a user `client.chunkferry` with only the capabilities chunkferry needs on
# pool `chunkferry` (docs/OPERATORS.md). Pools `chunkferry` (and `chunkferry2`) are created.
#
# --ec starts three OSDs instead of one and adds pool `chunkferry-ec`, erasure-coded (k=2, m=1,
# one chunk per OSD): the data pool of a store whose packs go to an EC pool (store init
# --data-pool). The first OSD is osd.0 as always; osd.1 and osd.2 live in DIR/osd1, DIR/osd2.
set -euo pipefail

die() { echo "ceph_cluster.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 auth=none osds=1 opt
  shift
  for opt in "$@"; do
    case $opt in
      --cephx) auth=cephx ;;
      --ec) osds=3 ;;
      "") ;;
      *) die "unknown option $opt" ;;
    esac
  done
  for b in ceph-mon ceph-osd ceph monmaptool ceph-authtool; do
    command -v $b >/dev/null || die "$b is missing: run tools/install-deps.sh"
  done
  [[ -e $dir/ceph.conf ]] && die "$dir already holds a cluster (stop it first)"
  mkdir -p "$dir"/{mon,osd,run,log}
  dir=$(cd "$dir" && pwd)
  local fsid port osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  port=$(free_port)
  cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
ms bind ipv6 = false
ms bind msgr2 = false
public addr = 127.0.0.1
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon
osd data = $dir/osd
osd objectstore = bluestore
bluestore block path = $dir/osd.block
bluestore block create = true
bluestore block size = $((${CHUNKFERRY_CEPH_BLOCK_GB:-10} << 30))
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = $((${CHUNKFERRY_CEPH_CACHE_MB:-64} << 20))
[osd]
# The OSD does not place itself in the CRUSH map at start (the script does, below): pacific's
# OSD may send that command before it has the monitor map, is refused ('wrong fsid') and exits;
# under load on 2 cores it did so at most starts.
osd crush update on start = false
osd class update on start = false
keyring = $dir/osd/keyring
CONF
  local id
  for ((id = 1; id < osds; id++)); do
    mkdir -p "$dir/osd$id"
    cat >>"$dir/ceph.conf" <<CONF
[osd.$id]
osd data = $dir/osd$id
bluestore block path = $dir/osd$id.block
keyring = $dir/osd$id/keyring
CONF
  done
  monmaptool --create --addv a "[v1:127.0.0.1:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  if [[ $auth == cephx ]]; then
    ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/keyring" >/dev/null
    ceph-mon --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" -c "$dir/ceph.conf"
  else
    ceph-mon --mkfs -i a --monmap "$dir/monmap" -c "$dir/ceph.conf"
  fi
  ceph-mon -i a -c "$dir/ceph.conf" 2>>"$dir/log/mon-start.log" ||
    die "ceph-mon did not start (status $?): see $dir/log"
  local c=(ceph -c "$dir/ceph.conf" --connect-timeout 30) i
  # The monitor answers commands once it has formed its quorum of one.
  for i in $(seq 1 100); do
    "${c[@]}" mon stat >/dev/null 2>&1 && break
    ((i < 100)) || die "the monitor in $dir did not answer in 20 s: see $dir/log"
    sleep 0.2
  done
  local osd_dir
  for ((id = 0; id < osds; id++)); do
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    osd_dir=$dir/osd$id
    ((id == 0)) && osd_dir=$dir/osd
    if [[ $auth == cephx ]]; then
      local secret
      secret=$(ceph-authtool --gen-print-key)
      echo "{\"cephx_secret\": \"$secret\"}" >"$dir/osd-secret.json"
      "${c[@]}" osd new "$osd_uuid" $id -i "$dir/osd-secret.json" >/dev/null
      ceph-authtool --create-keyring "$osd_dir/keyring" --name osd.$id --add-key "$secret" >/dev/null
    else
      "${c[@]}" osd new "$osd_uuid" $id >/dev/null
    fi
    "${c[@]}" osd crush add osd.$id 1.0 root=default host=localhost >/dev/null 2>&1 ||
      die "could not place osd.$id in the CRUSH map: see $dir/log"
    ceph-osd -i $id --mkfs --osd-uuid "$osd_uuid" -c "$dir/ceph.conf" 2>>"$dir/log/mkfs.log" ||
      die "ceph-osd --mkfs of osd.$id failed: see $dir/log"
    ceph-osd -i $id -c "$dir/ceph.conf" 2>>"$dir/log/osd-start.log"
  done
  wait_osd_up "$dir" "$osds"
  for pool in chunkferry chunkferry2; do
    "${c[@]}" osd pool create $pool 8 >/dev/null 2>&1
    "${c[@]}" osd pool application enable $pool chunkferry >/dev/null 2>&1
  done
  if ((osds >= 3)); then
    "${c[@]}" osd erasure-code-profile set chunkferry-ec k=2 m=1 crush-failure-domain=osd \
      >/dev/null 2>&1 || die "could not make the erasure-code profile: see $dir/log"
    "${c[@]}" osd pool create chunkferry-ec 8 8 erasure chunkferry-ec >/dev/null 2>&1 ||
      die "could not create the erasure-coded pool: see $dir/log"
    "${c[@]}" osd pool application enable chunkferry-ec chunkferry >/dev/null 2>&1
  fi
  if [[ $auth == cephx ]]; then
    # The least chunkferry needs: read, write and the lock class on its own pool.
    "${c[@]}" auth get-or-create client.chunkferry mon 'profile simple-rados-client' \
      osd 'allow rwx pool=chunkferry' >"$dir/chunkferry.keyring"
  fi
  # Writable: a probe object goes in and out.
  for i in $(seq 1 60); do
    if echo probe | timeout 20 rados -c "$dir/ceph.conf" -p chunkferry put probe - 2>/dev/null &&
      { ((osds < 3)) ||
        echo probe | timeout 20 rados -c "$dir/ceph.conf" -p chunkferry-ec put probe - 2>/dev/null; }; then
      rados -c "$dir/ceph.conf" -p chunkferry rm probe
      ((osds < 3)) || rados -c "$dir/ceph.conf" -p chunkferry-ec rm probe
      echo "$dir/ceph.conf"
      return 0
    fi
    sleep 1
  done
  die "the cluster in $dir did not become writable in 60 s: see $dir/log"
}

# Waits until the OSDs (1, or $2) are up in the map. An OSD can die at start (pacific's OSD
# sometimes asks the monitor before it has the monitor map, is told 'wrong fsid' and exits), and
# nothing that talks to its pool would ever return then: fail, so that the start is retried.
wait_osd_up() {
  local dir=$1 want=${2:-1} pid i f
  for i in $(seq 1 150); do
    for f in "$dir"/run/osd.*.pid; do
      pid=$(cat "$f" 2>/dev/null || true)
      [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && die "ceph-osd exited at start: see $dir/log"
    done
    ceph -c "$dir/ceph.conf" --connect-timeout 10 osd stat 2>/dev/null | grep -q " $want up" &&
      return 0
    sleep 0.2
  done
  die "the OSDs in $dir were not up in 30 s: see $dir/log"
}

stop() {
  local dir=$1 f pid
  [[ -d $dir ]] || return 0
  for f in "$dir"/run/osd.*.pid "$dir"/run/mon.a.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

# A start that fails (seen once in a few dozen: the monitor exiting at once with status 250) is
# retried from scratch, on a new port, after saying why.
start_with_retries() {
  local attempt
  for attempt in 1 2 3; do
    if (start "$@"); then return 0; fi
    echo "ceph_cluster.sh: start attempt $attempt failed; logs:" >&2
    tail -n 5 "$1"/log/*.log >&2 2>/dev/null || true
    stop "$1"
  done
  die "could not start a cluster in $1"
}

# Starts the OSD of a cluster whose OSD was stopped (the tests kill it), retried as a start is.
start_osd() {
  local dir=$1 attempt
  # The monitor still counts the killed OSD up (it has no peer to report it): mark it down, so
  # that "up" means the new one has booted.
  ceph -c "$dir/ceph.conf" --connect-timeout 10 osd down 0 >/dev/null 2>&1 || true
  for attempt in 1 2 3; do
    rm -f "$dir/run/osd.0.pid"
    if (ceph-osd -i 0 -c "$dir/ceph.conf" 2>>"$dir/log/osd-start.log" && wait_osd_up "$dir"); then
      return 0
    fi
    echo "ceph_cluster.sh: OSD start attempt $attempt failed" >&2
  done
  die "could not start the OSD in $dir"
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || die "usage: start DIR [--cephx] [--ec]"; start_with_retries "${@:2}" ;;
  start-osd) [[ $# -ge 2 ]] || die "usage: start-osd DIR"; start_osd "$2" ;;
  stop) [[ $# -ge 2 ]] || die "usage: stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR [--cephx] [--ec] | start-osd DIR | stop DIR" ;;
esac
