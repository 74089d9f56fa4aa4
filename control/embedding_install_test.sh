#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds two consumers against the installed files
# only: a C program through `pkg-config chunkferry`, and a CMake project through
# find_package(chunkferry) whose target uses both the C ABI (C) and the engine's C++ headers
# (C++20). Both run against the installed libchunkferry.so.
#
# usage: embedding_install_test.sh BUILD_DIR SCRATCH_DIR CC CXX CMAKE [EXTRA_FLAGS]
#   EXTRA_FLAGS: compile and link flags the consumers need, e.g. the sanitizers the library
#   was built with (its ASan runtime must come first in the consumers' library list).
set -euo pipefail

if [[ $# -lt 5 ]]; then
  echo "usage: $0 BUILD_DIR SCRATCH_DIR CC CXX CMAKE [EXTRA_FLAGS]" >&2
  exit 2
fi
build=$1
scratch=$2
cc=$3
cxx=$4
cmake=$5
extra=${6:-}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

rm -rf "$scratch"
mkdir -p "$scratch/src"
prefix=$scratch/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$scratch/install.log" ||
  fail "cmake --install: $(cat "$scratch/install.log")"

[[ -f $prefix/include/chunkferry.h ]] || fail "chunkferry.h not installed"
[[ -f $prefix/include/chunkferry/engine/pipeline/copier.h ]] || fail "engine headers not installed"
[[ -f $prefix/include/chunkferry/control/sync_service.h ]] || fail "control headers not installed"
[[ ! -e $prefix/include/chunkferry/io/internal ]] || fail "internal headers installed"
pc=$(find "$prefix" -name chunkferry.pc)
[[ -n $pc ]] || fail "chunkferry.pc not installed"
libdir=$(dirname "$(dirname "$pc")")
[[ -L $libdir/libchunkferry.so && -f $libdir/libchunkferry.so.0 ]] ||
  fail "libchunkferry.so and its soname link are not in $libdir"

cat >"$scratch/src/consumer.c" <<'EOF'
/* Opens a config that does not exist: the C ABI answers with a message, not a crash. */
#include <chunkferry.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char* error = NULL;
  chunkferry* h = chunkferry_open("/nonexistent/registry.json", &error);
  char* response = NULL;
  const int status = chunkferry_sync(h, "g", "{}", 0, NULL, NULL, &response);
  const int ok = h == NULL && error != NULL && status == 400 && response != NULL;
  printf("libchunkferry %s: open said \"%s\", sync said %d\n", chunkferry_version(),
         error ? error : "", status);
  chunkferry_free(error);
  chunkferry_free(response);
  return ok ? 0 : 1;
}
EOF

cat >"$scratch/src/consumer_cc.cc" <<'EOF'
// The engine's C++ API through the same library: the error body of the sync API.
#include <cstdio>

#include "control/api_error.h"
#include "engine/format/volume_backup.h"

extern "C" int CxxPart(void) {
  const auto body = chunkferry::control::ErrorBody(
      chunkferry::control::MakeError(chunkferry::control::kSysNotFound, "no such group"));
  const std::string uuid = chunkferry::engine::NewUuid();
  std::printf("C++: %s, a uuid: %s\n", body.dump().c_str(), uuid.c_str());
  return body["error"]["code"] == "SYS.1003" && uuid.size() == 32 ? 0 : 1;
}
EOF

cat >"$scratch/src/consumer_main.c" <<'EOF'
#include <chunkferry.h>
#include <stdio.h>

int CxxPart(void);

int main(void) {
  printf("C: libchunkferry %s\n", chunkferry_version());
  return CxxPart();
}
EOF

cat >"$scratch/src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(chunkferry_consumer LANGUAGES C CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(chunkferry 0.1 REQUIRED)
add_executable(consumer consumer_main.c consumer_cc.cc)
target_link_libraries(consumer PRIVATE chunkferry::chunkferry)
EOF

# Only the installed files: the build and source trees must not leak in.
export PKG_CONFIG_PATH=$libdir/pkgconfig
export LD_LIBRARY_PATH=$libdir
flags=$(pkg-config --cflags --libs chunkferry) || fail "pkg-config chunkferry"
# shellcheck disable=SC2086  # word splitting of the flags is meant
"$cc" -std=c99 -Wall -Werror $extra "$scratch/src/consumer.c" -o "$scratch/pkg_consumer" $flags ||
  fail "building the pkg-config consumer with $flags"
"$scratch/pkg_consumer" || fail "the pkg-config consumer"

CFLAGS=$extra CXXFLAGS=$extra LDFLAGS=$extra "$cmake" -S "$scratch/src" -B "$scratch/cmake-build" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$scratch/configure.log" || fail "configuring the CMake consumer: $(cat "$scratch/configure.log")"
"$cmake" --build "$scratch/cmake-build" >"$scratch/build.log" ||
  fail "building the CMake consumer: $(cat "$scratch/build.log")"
# Its RUNPATH names the prefix (CMake adds it for an imported library): no LD_LIBRARY_PATH.
env -u LD_LIBRARY_PATH "$scratch/cmake-build/consumer" || fail "the CMake consumer"
echo "installed package: pkg-config and CMake consumers built and ran"
