#!/usr/bin/env bash
# The main job (README command 1): a real replication, end to end, through the sync API. A
# generated VM backup group (a Root and two Data volumes, two versions) is imported into a local
# image store; a store daemon on 127.0.0.1 serves the remote store; the API daemon serves
# SyncVmBackupFromImageStoreBackupStorage; `curl -X PUT` sends the documented request (v1
# synchronously, v2 as a job that is polled) and the inventory response is printed; then the
# remote store is verified and every volume restored from it and checked byte for byte. Needs no
# configuration; cleans up after itself (both daemons included).
#   tools/demo.sh BUILD_DIR [ROOT_SIZE DATA_SIZE]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
root_size=${2:-1G}
data_size=${3:-512M}
cf=$build/tools/chunkferry
gen=$build/bench/vmgen/make_vm_group
work=$(mktemp -d "${TMPDIR:-/var/tmp}/chunkferry-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
uuid_of() { printf '%s' "$1" | md5sum | cut -c1-32; }
# Starts a daemon writing its address to $work/$1.ready; the rest is its command line.
start_daemon() {
  local name=$1
  shift
  "$@" --ready-file "$work/$name.ready" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do [[ -s $work/$name.ready ]] && return 0; sleep 0.05; done
  cat "$work/$name.log" >&2
  echo "the $name daemon did not start" >&2
  exit 1
}

step "generating a VM backup group: Root $root_size + two Data volumes of $data_size, two versions"
"$gen" --out "$work/images" --root-size "$root_size" --data-size "$data_size,$data_size" \
  --versions 2 --seed 42

step "creating the local image store and the remote one"
"$cf" store init --store "$work/local"
"$cf" store init --store "$work/remote"

vm=5f1e0c3a9b2d4e6f8a7c1b0d2e3f4a5b
volumes=(root.img:Root:b1c2d3e4f5a60718293a4b5c6d7e8f90 data1.img:Data:c2d3e4f5a60718293a4b5c6d7e8f90a1
         data2.img:Data:d3e4f5a60718293a4b5c6d7e8f90a1b2)
for version in v1 v2; do
  group=$(uuid_of "demo-group-$version")
  step "importing $version into the local store as group $group"
  for spec in "${volumes[@]}"; do
    IFS=: read -r file type volume <<<"$spec"
    "$cf" import --quiet --store "$work/local" --image "$work/images/$version/$file" \
      --group "$group" --vm "$vm" --volume "$volume" --type "$type" --name "$version-$file" \
      --uuid "$(uuid_of "$version-$file")"
  done
done

step "starting the store daemon for the remote store on 127.0.0.1"
start_daemon store "$cf" serve --store "$work/remote" --listen 127.0.0.1:0
echo "  serving tcp://$(cat "$work/store.ready")"

step "writing the API's registry (backup storage uuid -> store) and starting the API daemon"
src_bs=$(uuid_of local-backup-storage)
dst_bs=$(uuid_of remote-backup-storage)
session=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/registry.json" <<JSON
{
  "backupStorages": [
    {"uuid": "$src_bs", "name": "local-imagestore", "store": "$work/local"},
    {"uuid": "$dst_bs", "name": "remote-imagestore", "store": "tcp://$(cat "$work/store.ready")",
     "keyFile": "$work/remote/auth.key"}
  ],
  "sessions": ["$session"]
}
JSON
chmod 600 "$work/registry.json"  # it lists a session: the API refuses it readable by others
sed 's/^/  /' "$work/registry.json"
start_daemon api "$cf" api --config "$work/registry.json" --listen 127.0.0.1:0
api="http://$(cat "$work/api.ready")"
echo "  API on $api"

body="{\"syncVmBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"$src_bs\", \"dstBackupStorageUuid\": \"$dst_bs\"}, \"systemTags\": [], \"userTags\": []}"
bytes_of_version() {
  local total=0 f
  for f in "$work/images/$1"/*.img; do total=$((total + $(stat -c %s "$f"))); done
  echo "$total"
}
rate() {  # rate BYTES START END (seconds since the epoch)
  awk -v b="$1" -v t0="$2" -v t1="$3" \
    'BEGIN { s = t1 - t0; printf "%.0f MB/s (%.2f s for %.2f GB)", b / s / 1e6, s, b / 1e9 }'
}

group=$(uuid_of demo-group-v1)
step "v1: PUT $api/zstack/v1/vm-backups/$group/actions (synchronous)"
echo "  body: $body"
start=$(date +%s.%N)
curl -sS -X PUT "$api/zstack/v1/vm-backups/$group/actions" \
  -H "Authorization: OAuth $session" -H 'Content-Type: application/json;charset=UTF-8' \
  -d "$body" -o "$work/v1.json" -w '  HTTP %{http_code}\n' | tee "$work/v1.status"
end=$(date +%s.%N)
grep -q 'HTTP 200' "$work/v1.status" || { cat "$work/v1.json"; exit 1; }
python3 -m json.tool "$work/v1.json" | sed 's/^/  /'
echo "  v1 replicated at $(rate "$(bytes_of_version v1)" "$start" "$end")"

group=$(uuid_of demo-group-v2)
job=$(uuid_of demo-job-v2)
step "v2: the same request as a job (X-Job-UUID: $job), polled until done"
start=$(date +%s.%N)
curl -sS -X PUT "$api/zstack/v1/vm-backups/$group/actions" \
  -H "X-Job-UUID: $job" -H 'X-JSON-Schema: true' -H "Authorization: OAuth $session" \
  -H 'Content-Type: application/json;charset=UTF-8' -d "$body" -w '\n  HTTP %{http_code}\n' |
  sed 's/^/  /'
while :; do
  code=$(curl -sS -o "$work/v2.json" -w '%{http_code}' -H 'X-JSON-Schema: true' \
    "$api/zstack/v1/api-jobs/$job")
  [[ $code == 202 ]] || break
  curl -sS "$api/chunkferry/v1/api-jobs/$job/progress" | sed 's/^/  progress: /'
  echo
  sleep 0.5
done
end=$(date +%s.%N)
echo "  poll: HTTP $code"
[[ $code == 200 ]] || { cat "$work/v2.json"; exit 1; }
python3 - "$work/v2.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
for inv in body["inventories"]:
    refs = ", ".join(r["backupStorageUuid"][:8] + ":" + r["status"] for r in inv["backupStorageRefs"])
    print("  %-4s %-14s %12d bytes  refs %s" % (inv["type"], inv["name"], inv["size"], refs))
print("  schema entries: %d" % len(body["schema"]))
PY
echo "  v2 replicated (only its new chunks travel) at $(rate "$(bytes_of_version v2)" "$start" "$end")"

step "stopping both daemons; verifying the remote store"
for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done
pids=()
tail -n 3 "$work/store.log" | sed 's/^/  store daemon: /'
tail -n 3 "$work/api.log" | sed 's/^/  api daemon: /'
"$cf" verify --quiet --store "$work/remote"
"$cf" ls --quiet --store "$work/remote"

step "restoring every volume of both versions from the remote store, checking every byte"
for version in v1 v2; do
  for spec in "${volumes[@]}"; do
    IFS=: read -r file type volume <<<"$spec"
    "$cf" restore --store "$work/remote" --backup "$(uuid_of "$version-$file")" \
      --output "$work/$version-$file" | sed 's/^/  /'
    cmp "$work/images/$version/$file" "$work/$version-$file"
    echo "  $version/$file: byte-identical"
    rm -f "$work/$version-$file"
  done
done
echo
echo "store sizes: local $(du -sh "$work/local" | cut -f1), remote $(du -sh "$work/remote" | cut -f1)," \
  "images $(du -sh --apparent-size "$work/images" | cut -f1) (apparent)"
echo "demo finished: the API replicated both versions and every restored image matched its original"
