#!/usr/bin/env bash
# Installs everything chunkferry needs to build, test and benchmark, from Debian 12's packages.
# Idempotent: packages already present are left alone. ceph-mon, ceph-osd and ceph-common start
# the one-node cluster the RADOS tests run against (tools/ceph_cluster.sh).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git
      liburing-dev libxxhash-dev libzstd-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
      libssl-dev nlohmann-json3-dev libcpp-httplib-dev curl python3 zstd xxhash
      clang libclang-rt-14-dev
      librados-dev libradospp-dev ceph-mon ceph-osd ceph-common)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
