#!/usr/bin/env bash
# The main job (README command 1): a real replication, end to end, on a generated VM backup
# group — import into a local store, copy to a second store, restore from the copy, check every
# byte, print throughput. Needs no configuration; cleans up after itself.
#   tools/demo.sh BUILD_DIR [ROOT_SIZE DATA_SIZE]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
root_size=${2:-1G}
data_size=${3:-512M}
cf=$build/tools/chunkferry
gen=$build/bench/vmgen/make_vm_group
work=$(mktemp -d "${TMPDIR:-/var/tmp}/chunkferry-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "generating a VM backup group: Root $root_size + two Data volumes of $data_size, two versions"
"$gen" --out "$work/images" --root-size "$root_size" --data-size "$data_size,$data_size" \
  --versions 2 --seed 42

step "creating a local and a remote image store"
"$cf" store init --store "$work/local"
"$cf" store init --store "$work/remote"

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
  step "copying group $group to the remote store (dedupe, full verification)"
  "$cf" copy --quiet --from "$work/local" --to "$work/remote" --group "$group"
  step "restoring from the remote store and checking every byte"
  for spec in "${volumes[@]}"; do
    IFS=: read -r file type volume <<<"$spec"
    backup=$(printf '%s' "$version-$file" | md5sum | cut -c1-32)
    "$cf" restore --quiet --store "$work/remote" --backup "$backup" --output "$work/$version-$file"
    cmp "$work/images/$version/$file" "$work/$version-$file"
    echo "  $version/$file: byte-identical"
    rm -f "$work/$version-$file"
  done
done

step "verifying the remote store"
"$cf" verify --quiet --store "$work/remote"
step "the remote store's groups"
"$cf" ls --quiet --store "$work/remote"
echo
echo "store sizes: local $(du -sh "$work/local" | cut -f1), remote $(du -sh "$work/remote" | cut -f1)," \
  "images $(du -sh --apparent-size "$work/images" | cut -f1) (apparent)"
echo "demo finished: every restored image matched its original"
