#!/usr/bin/env bash
# The project's two entry points on a fresh Debian 12 machine (see README.md):
#   tools/dev.sh demo   install, build, and run a real replication end to end
#   tools/dev.sh test   install, build (plain and ASan+UBSan), and run every test in both builds
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

case "${1:-}" in
  demo)
    bash tools/install-deps.sh
    build build
    exec bash tools/demo.sh build
    ;;
  test)
    bash tools/install-deps.sh
    build build
    ctest --test-dir build --output-on-failure -j "$jobs"
    build build-asan -DCHUNKFERRY_SANITIZE=ON -DCHUNKFERRY_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$jobs"
    ;;
  *)
    echo "usage: tools/dev.sh demo|test" >&2
    exit 2
    ;;
esac
