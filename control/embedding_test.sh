#!/usr/bin/env bash
# Drives a real sync through libchunkferry: builds a source store holding one VM backup group
# (a Root and two Data volumes of 2 MiB) and an empty destination store with the chunkferry CLI,
# writes the registry config naming them, runs CHECKER (the C test, or the Python one) with
#   CHECKER... CONFIG GROUP SRC_STORAGE DST_STORAGE ROOT_BACKUP
# and then checks with the CLI that the destination verifies clean and holds the group.
#
# usage: embedding_test.sh CLI SCRATCH_DIR CHECKER [CHECKER_ARGS...]
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 CLI SCRATCH_DIR CHECKER [CHECKER_ARGS...]" >&2
  exit 2
fi
cli=$1
scratch=$2
shift 2

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

rm -rf "$scratch"
mkdir -p "$scratch"
src=$scratch/src
dst=$scratch/dst
group=6a0c3f1e9b2d4c5e8f7a1b2c3d4e5f60
vm=0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a
root_backup=b0000000000000000000000000000001
src_storage=5c0000000000000000000000000000aa
dst_storage=d50000000000000000000000000000bb

"$cli" store init --store "$src" --quiet >/dev/null
"$cli" store init --store "$dst" --quiet >/dev/null

# Each image: 1.5 MiB of random bytes (nothing for the chunker to dedupe) then 0.5 MiB of
# zeros (the zero-chunk path).
make_image() {
  head -c $((1536 * 1024)) /dev/urandom >"$1"
  head -c $((512 * 1024)) /dev/zero >>"$1"
}
import() {  # type volume backup name
  make_image "$scratch/$4.img"
  "$cli" import --store "$src" --image "$scratch/$4.img" --group "$group" --vm "$vm" \
    --type "$1" --volume "$2" --uuid "$3" --name "$4" --quiet >/dev/null
}
# Data volumes first: the inventories must still list the Root first.
import Data a1000000000000000000000000000001 b0000000000000000000000000000002 data-1
import Data a1000000000000000000000000000002 b0000000000000000000000000000003 data-2
import Root a1000000000000000000000000000000 "$root_backup" root

# Relative store paths: the registry resolves them from the config's folder.
cat >"$scratch/registry.json" <<EOF
{
  "backupStorages": [
    {"uuid": "$src_storage", "name": "local", "store": "src"},
    {"uuid": "$dst_storage", "name": "remote", "store": "dst"}
  ],
  "sessions": ["5e5510000000000000000000000000aa"],
  "verify": "full"
}
EOF
chmod 600 "$scratch/registry.json"  # it lists a session: a secret, refused when others may read it

"$@" "$scratch/registry.json" "$group" "$src_storage" "$dst_storage" "$root_backup" ||
  fail "checker $1 failed"

# The destination as the CLI sees it: clean, and holding the group with its three volumes.
verify=$("$cli" verify --store "$dst" --json --quiet) || fail "verify of the destination: $verify"
tr -d ' \n' <<<"$verify" | grep -q '"ok":true' || fail "destination does not verify: $verify"
tr -d ' \n' <<<"$verify" | grep -q '"groups":1,' || fail "destination holds not 1 group: $verify"
listing=$("$cli" ls --store "$dst" --group "$group" --quiet) || fail "ls of the destination"
[[ $(grep -c '^  b00000000000000000000000000000' <<<"$listing") == 3 ]] ||
  fail "destination lists not 3 volumes of the group: $listing"
grep -q "$root_backup  Root" <<<"$listing" || fail "no Root volume on the destination: $listing"
echo "destination: group $group with 3 volumes, verifies clean"
