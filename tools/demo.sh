#!/usr/bin/env bash
# The main job (README command 1): a real replication, end to end, on a generated VM backup
# group — import into a local store, push it over TCP to a store daemon on 127.0.0.1, pull it
# back into a third store, restore from there and check every byte, print throughput. Needs no
# configuration; cleans up after itself (the daemon included).
#   tools/demo.sh BUILD_DIR [ROOT_SIZE DATA_SIZE]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
root_size=${2:-1G}
data_size=${3:-512M}
cf=$build/tools/chunkferry
gen=$build/bench/vmgen/make_vm_group
work=$(mktemp -d "${TMPDIR:-/var/tmp}/chunkferry-demo.XXXXXX")
daemon=
cleanup() {
  if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "generating a VM backup group: Root $root_size + two Data volumes of $data_size, two versions"
"$gen" --out "$work/images" --root-size "$root_size" --data-size "$data_size,$data_size" \
  --versions 2 --seed 42

step "creating a local image store, a remote one (served by a daemon) and a third for pulling"
"$cf" store init --store "$work/local"
"$cf" store init --store "$work/remote"
"$cf" store init --store "$work/pulled"

step "starting the store daemon for the remote store on 127.0.0.1 (a free port)"
"$cf" serve --store "$work/remote" --listen 127.0.0.1:0 --ready-file "$work/ready" \
  2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 200); do [[ -s $work/ready ]] && break; sleep 0.05; done
[[ -s $work/ready ]] || { cat "$work/daemon.log"; echo "the daemon did not start" >&2; exit 1; }
remote="tcp://$(cat "$work/ready")"
key="$work/remote/auth.key"  # shared out of band in real life; here it is on this machine
echo "  daemon pid $daemon serving $remote"

vm=5f1e0c3a9b2d4e6f8a7c1b0d2e3f4a5b
volumes=(root.img:Root:b1c2d3e4f5a60718293a4b5c6d7e8f90 data1.img:Data:c2d3e4f5a60718293a4b5c6d7e8f90a1
         data2.img:Data:d3e4f5a60718293a4b5c6d7e8f90a1b2)
for version in v1 v2; do
  group=$(printf '%s' "demo-group-$version" | md5sum | cut -c1-32)
  step "importing $version as group $group"
  for spec in "${volumes[@]}"; do
    IFS=: read -r file type volume <<<"$spec"
    backup=$(printf '%s' "$version-$file" | md5sum | cut -c1-32)
    "$cf" import --quiet --store "$work/local" --image "$work/images/$version/$file" \
      --group "$group" --vm "$vm" --volume "$volume" --type "$type" --name "$version-$file" \
      --uuid "$backup"
  done
  step "pushing group $group to the daemon (dedupe, compressed records, full verification)"
  "$cf" sync --quiet --from "$work/local" --to "$remote" --key-file "$key" --group "$group"
  step "pulling group $group back from the daemon into a third store"
  "$cf" sync --quiet --from "$remote" --to "$work/pulled" --key-file "$key" --group "$group"
  step "restoring from the pulled store and checking every byte"
  for spec in "${volumes[@]}"; do
    IFS=: read -r file type volume <<<"$spec"
    backup=$(printf '%s' "$version-$file" | md5sum | cut -c1-32)
    "$cf" restore --store "$work/pulled" --backup "$backup" --output "$work/$version-$file" |
      sed 's/^/  /'

    cmp "$work/images/$version/$file" "$work/$version-$file"
    echo "  $version/$file: byte-identical"
    rm -f "$work/$version-$file"
  done
done

step "stopping the daemon; verifying the remote and the pulled store"
kill "$daemon"
wait "$daemon" || true
daemon=
sed 's/^/  daemon: /' "$work/daemon.log" | tail -n 4
"$cf" verify --quiet --store "$work/remote"
"$cf" verify --quiet --store "$work/pulled"
step "the remote store's groups"
"$cf" ls --quiet --store "$work/remote"
echo
echo "store sizes: local $(du -sh "$work/local" | cut -f1), remote $(du -sh "$work/remote" | cut -f1)," \
  "images $(du -sh --apparent-size "$work/images" | cut -f1) (apparent)"
echo "demo finished: every restored image matched its original"
