#!/usr/bin/env bash
# The project's two entry points on a fresh Debian 12 machine (see README.md):
#   tools/dev.sh demo   install, build, and run a real replication end to end
#   tools/dev.sh test   install, build (plain and ASan+UBSan), and run every test in both builds
# and the benchmark against the peers (not a test; see docs/BENCHMARKS.md):
#   tools/dev.sh bench [quick|full] [compare.py flags...]
#                       install the peers and the plotting library, build, and run
#                       bench/compare.py (full: 3 runs at 2G + 1G, and docs/BENCHMARKS.md updated)
#                       against a build of e03b7e3 too (CF_BENCH_BASELINE=REV, or empty for none)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

build() {  # build DIR [cmake args...]
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

# The tests that run threads (worker pool, queues, copier, store daemon, remote store, job table,
# HTTP API and its webhooks, sync service, collector), for the ThreadSanitizer build: targets and
# ctest names.
tsan_tests="worker_pool_test queue_test wire_conn_test store_server_test remote_store_test
  local_store_test job_table_test http_api_test http_gate_test https_gate_test sync_service_test
  copy_test gc_test key_rights_test tls_sync_test webhook_test http_webhook_test http_family_test"
tsan_filter="WorkerPool|QueueTest|WireConn|StoreServer|RemoteStore|LocalStoreTest|JobTable|HttpApi"
tsan_filter+="|HttpGate|HttpsGate|SyncService|CopyTest|GcTest|KeyRights|TlsSync|Webhook|HttpFamily"

case "${1:-}" in
  demo)
    bash tools/install-deps.sh
    build build
    exec bash tools/demo.sh build
    ;;
  test)
    bash tools/install-deps.sh
    # Every build type builds warning-free and is tested: Release (what packagers build) runs
    # everything; Debug (assertions on; -O1 so the sanitizers stay fast enough) under
    # ASan+UBSan; RelWithDebInfo under ThreadSanitizer for the tests that run threads.
    build build-release -DCMAKE_BUILD_TYPE=Release
    ctest --test-dir build-release --output-on-failure -j "$jobs"
    build build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DCHUNKFERRY_SANITIZE=ON \
      -DCHUNKFERRY_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$jobs"
    # TSan cannot see the memory io_uring shares with the kernel (liburing maps its rings with
    # raw syscalls, and ring memory is reused across queues), so this build checks the threads
    # backend: CHUNKFERRY_DISABLE_URING makes "auto" pick it and skips the uring variants.
    cmake -S "$root" -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHUNKFERRY_TSAN=ON \
      -DCHUNKFERRY_BENCH=OFF >/dev/null
    cmake --build build-tsan -j "$jobs" --target chunkferry $tsan_tests
    CHUNKFERRY_DISABLE_URING=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tools/tsan.supp" \
      ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R "$tsan_filter"
    # Every parser fuzzed (tests/fuzz/): the known crash inputs once, then a bounded run each.
    JOBS=$jobs bash tools/fuzz.sh 10
    ;;
  bench)
    shift
    size=quick
    if [[ ${1:-} == quick || ${1:-} == full ]]; then
      size=$1
      shift
    fi
    bash tools/install-deps.sh
    # The peers and the plots: the bench's own setup, not the tests'.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      restic borgbackup casync rclone rsync zstd python3-matplotlib debootstrap >/dev/null
    build build
    extra=()
    [[ $size == full ]] && extra+=(--update-docs)
    # The CPU target is a cut against the issue's baseline build (e03b7e3, before the CPU work),
    # measured in the same run: built once from git into /var/tmp, kept for later runs.
    # CF_BENCH_BASELINE= (empty) skips it.
    base=${CF_BENCH_BASELINE-e03b7e3}
    if [[ -n $base ]] && git rev-parse -q --verify "$base^{commit}" >/dev/null; then
      bdir=/var/tmp/cf-baseline-$base
      if [[ ! -x $bdir/build/tools/chunkferry ]]; then
        rm -rf "$bdir" && mkdir -p "$bdir/src"
        git archive "$base" | tar -x -C "$bdir/src"
        cmake -S "$bdir/src" -B "$bdir/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DCHUNKFERRY_BENCH=OFF >/dev/null
        cmake --build "$bdir/build" -j "$jobs" --target chunkferry
      fi
      extra+=(--baseline "$bdir/build/tools/chunkferry" --baseline-rev "$base")
    fi
    # Debian's python3: the one python3-matplotlib installs into.
    exec /usr/bin/python3 bench/compare.py --build build --size "$size" "${extra[@]}" "$@"
    ;;
  *)
    echo "usage: tools/dev.sh demo|test|bench [quick|full]" >&2
    exit 2
    ;;
esac
